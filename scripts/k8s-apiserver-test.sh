#!/usr/bin/env bash
# Opt-in: the chart applied to a real kube-apiserver + etcd with the KServe/Argo/Istio/
# Prometheus-operator CRDs installed (tools/k8s_apiserver_check.py). Builds what it needs first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/local/go/bin"
"$ROOT/scripts/install-k8s-tools.sh"
"$ROOT/scripts/build-k8s-apiserver.sh"
exec "${PYTHON:-$ROOT/.venv/bin/python}" "$ROOT/tools/k8s_apiserver_check.py"
