#!/usr/bin/env bash
# Delete the kind cluster `make kind-up` created. UNTESTED here (no Docker daemon).
set -euo pipefail
CLUSTER="${KIND_CLUSTER:-movierec}"
command -v kind >/dev/null || { echo "kind-down: kind is required" >&2; exit 1; }
kind delete cluster --name "$CLUSTER"
