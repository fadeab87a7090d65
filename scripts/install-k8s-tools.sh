#!/usr/bin/env bash
# Build the Kubernetes validation toolchain into .cache/ (idempotent, offline apart from
# the Go module proxy):
#   .cache/bin/helm, .cache/bin/kubeconform         go install, pinned versions
#   .cache/k8s-schemas/core/<kind>-<group>-<ver>.json  core Kubernetes JSON schemas (strict),
#       generated from the OpenAPI v2 document (api/openapi-spec/swagger.json) that ships in
#       the k8s.io/kubernetes module, i.e. the document kube-apiserver serves at /openapi/v2
#   .cache/k8s-schemas/crds/serving.kserve.io/*.json   KServe v0.20.0 CRDs -> JSON schema
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="$(dirname "$ROOT")/shared"
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
SCHEMAS="$CACHE/k8s-schemas"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

HELM_VERSION="v3.22.0"
KUBECONFORM_VERSION="v0.8.0"
KUBERNETES_VERSION="v1.34.4"   # core schemas are generated from this release's OpenAPI v2 doc
KSERVE_CRDS="$SHARED/schemas/crds-yaml/kserve-v0.20.0"

mkdir -p "$BIN" "$SCHEMAS"
export GOBIN="$BIN" GOFLAGS="${GOFLAGS:--buildvcs=false}"

stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

if ! stamp_ok "$BIN/.helm.version" "$HELM_VERSION" || [[ ! -x "$BIN/helm" ]]; then
  echo "k8s-tools: building helm $HELM_VERSION (go install, ~75 s on 2 cores)" >&2
  "$GO" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" > "$BIN/.helm.version"
fi

if ! stamp_ok "$BIN/.kubeconform.version" "$KUBECONFORM_VERSION" || [[ ! -x "$BIN/kubeconform" ]]; then
  echo "k8s-tools: building kubeconform $KUBECONFORM_VERSION" >&2
  "$GO" install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  echo "$KUBECONFORM_VERSION" > "$BIN/.kubeconform.version"
fi

CORE="$SCHEMAS/core"
core_stamp="$KUBERNETES_VERSION $(sha256sum "$ROOT/tools/openapi2jsonschema.py" | cut -c1-16)"
if ! stamp_ok "$CORE/.version" "$core_stamp"; then
  echo "k8s-tools: generating core schemas from k8s.io/kubernetes@$KUBERNETES_VERSION swagger.json" >&2
  moddir="$("$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
            | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  rm -rf "$CORE"
  "$PY" "$ROOT/tools/openapi2jsonschema.py" swagger \
      "$moddir/api/openapi-spec/swagger.json" "$CORE"
  echo "$core_stamp" > "$CORE/.version"
fi

KS="$SCHEMAS/crds"
crd_stamp="kserve-v0.20.0 $(cat "$KSERVE_CRDS"/*.yaml "$SHARED/schemas/crds/argoproj.io/workflowtemplate_v1alpha1.json" "$ROOT/tools/openapi2jsonschema.py" | sha256sum | cut -c1-16)"
if ! stamp_ok "$KS/.version" "$crd_stamp"; then
  echo "k8s-tools: converting KServe v0.20.0 CRDs to JSON schema" >&2
  rm -rf "$KS"
  "$PY" "$ROOT/tools/openapi2jsonschema.py" crd "$KS" "$KSERVE_CRDS"/serving.kserve.io_*.yaml
  # Argo publishes no Workflow schema in the shared catalogue; a Workflow's spec is the
  # WorkflowTemplate's spec (WorkflowSpec), so workflows/retrain-run.yaml is checked with it.
  "$PY" "$ROOT/tools/openapi2jsonschema.py" alias \
      "$SHARED/schemas/crds/argoproj.io/workflowtemplate_v1alpha1.json" \
      "$KS/argoproj.io/workflow_v1alpha1.json" Workflow
  echo "$crd_stamp" > "$KS/.version"
fi

echo "k8s-tools: ok ($("$BIN/helm" version --short 2>/dev/null), kubeconform $KUBECONFORM_VERSION, k8s $KUBERNETES_VERSION schemas)" >&2
