#!/usr/bin/env bash
# movierec on a local kind cluster, for users with Docker + kind + kubectl (+ curl).
#
#   make kind-up      # this script
#   make kind-down    # delete the cluster
#
# UNTESTED on the project's build machine: it has no Docker daemon, so no kind cluster can run
# there. Every manifest this script applies from the repo is rendered and schema-validated by
# `make test-k8s`; the third-party installs below follow their projects' documented steps.
#
# Steps: cluster -> cert-manager -> Istio -> KServe v0.20 (Standard mode) -> Argo Workflows ->
# Prometheus operator (kube-prometheus-stack) -> Kafka + Redis (dev, single node) -> images
# built and loaded -> `helm install` of charts/movierec -> one retraining run (Argo) to register
# a first model -> smoke request to GET /recommend/<user>.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER:-movierec}"
NS=movierec
TAG="${MOVIEREC_TAG:-0.1.0}"
REGISTRY=ghcr.io/movierec
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.34.0}"
CERT_MANAGER_VERSION=v1.18.2
ISTIO_VERSION=1.27.1
KSERVE_VERSION=v0.20.0
ARGO_WORKFLOWS_VERSION=v3.7.2
KUBE_PROMETHEUS_STACK_VERSION=77.5.0
HELM="${HELM:-$ROOT/.cache/bin/helm}"
[[ -x "$HELM" ]] || HELM="$(command -v helm)"

need() { command -v "$1" >/dev/null || { echo "kind-up: $1 is required" >&2; exit 1; }; }
need docker; need kind; need kubectl; need curl
docker info >/dev/null 2>&1 || { echo "kind-up: no Docker daemon reachable" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*" >&2; }

step "kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 120s
kubectl config use-context "kind-$CLUSTER"

step "cert-manager $CERT_MANAGER_VERSION (KServe webhooks)"
kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
kubectl -n cert-manager rollout status deploy/cert-manager-webhook --timeout=300s

step "Istio $ISTIO_VERSION"
"$HELM" repo add istio https://istio-release.storage.googleapis.com/charts --force-update >/dev/null
"$HELM" upgrade --install istio-base istio/base -n istio-system --create-namespace --version "$ISTIO_VERSION" --wait
"$HELM" upgrade --install istiod istio/istiod -n istio-system --version "$ISTIO_VERSION" --wait
"$HELM" upgrade --install istio-ingressgateway istio/gateway -n istio-system --version "$ISTIO_VERSION" \
  --set service.type=NodePort --wait

step "KServe $KSERVE_VERSION (Standard deployment mode)"
"$HELM" upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd --version "$KSERVE_VERSION" \
  -n kserve --create-namespace --wait
"$HELM" upgrade --install kserve oci://ghcr.io/kserve/charts/kserve --version "$KSERVE_VERSION" -n kserve \
  --set kserve.controller.deploymentMode=Standard --wait

step "Argo Workflows $ARGO_WORKFLOWS_VERSION"
kubectl create namespace argo --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n argo --server-side -f \
  "https://github.com/argoproj/argo-workflows/releases/download/$ARGO_WORKFLOWS_VERSION/install.yaml"
kubectl -n argo rollout status deploy/workflow-controller --timeout=300s

step "Prometheus operator (kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION)"
"$HELM" repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
"$HELM" upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  -n monitoring --create-namespace --version "$KUBE_PROMETHEUS_STACK_VERSION" \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --set grafana.sidecar.dashboards.enabled=true --wait --timeout 10m

step "namespace $NS (Istio sidecar injection), Kafka and Redis for development"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NS" istio-injection=enabled --overwrite
kubectl apply -n "$NS" -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis, labels: {app: redis}}
spec:
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers:
        - name: redis
          image: redis:7.0.15-bookworm
          ports: [{containerPort: 6379}]
          resources: {limits: {cpu: 500m, memory: 512Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: redis}
spec: {selector: {app: redis}, ports: [{port: 6379}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kafka, labels: {app: kafka}}
spec:
  selector: {matchLabels: {app: kafka}}
  template:
    metadata: {labels: {app: kafka}}
    spec:
      containers:
        - name: kafka
          image: apache/kafka:4.1.1
          ports: [{containerPort: 9092}]
          env:
            - {name: KAFKA_NODE_ID, value: "1"}
            - {name: KAFKA_PROCESS_ROLES, value: "broker,controller"}
            - {name: KAFKA_LISTENERS, value: "PLAINTEXT://:9092,CONTROLLER://:9093"}
            - {name: KAFKA_ADVERTISED_LISTENERS, value: "PLAINTEXT://kafka.movierec.svc:9092"}
            - {name: KAFKA_CONTROLLER_LISTENER_NAMES, value: CONTROLLER}
            - {name: KAFKA_CONTROLLER_QUORUM_VOTERS, value: "1@localhost:9093"}
            - {name: KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, value: "1"}
            - {name: KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR, value: "1"}
          resources: {limits: {cpu: "1", memory: 1Gi}}
---
apiVersion: v1
kind: Service
metadata: {name: kafka}
spec: {selector: {app: kafka}, ports: [{port: 9092}]}
YAML

step "images $REGISTRY/movierec-<component>:$TAG built and loaded into kind"
for component in ingestor model-server experiments trainer drift simulator; do
  docker build -f "$ROOT/docker/$component.Dockerfile" -t "$REGISTRY/movierec-$component:$TAG" "$ROOT"
  kind load docker-image --name "$CLUSTER" "$REGISTRY/movierec-$component:$TAG"
done

step "helm install movierec (kind: local-path storage is ReadWriteOnce)"
"$ROOT/scripts/k8s-chart-sync.sh"
"$HELM" upgrade --install movierec "$ROOT/charts/movierec" -n "$NS" \
  --set image.tag="$TAG" \
  --set platform.data.accessMode=ReadWriteOnce \
  --set monitoring.labels.release=kube-prometheus-stack \
  --wait --timeout 10m

step "simulated traffic for 5 minutes, then one retraining run to register a first model"
kubectl -n "$NS" delete job movierec-simulator --ignore-not-found
kubectl -n "$NS" create job movierec-simulator --image "$REGISTRY/movierec-simulator:$TAG" -- \
  python -m simulator kafka.bootstrap=kafka.movierec.svc:9092 kafka.topic=movielog ++simulator.duration_s=300
kubectl -n "$NS" wait --for=condition=complete job/movierec-simulator --timeout=900s
run="$(kubectl create -f "$ROOT/workflows/retrain-run.yaml" -o name)"
kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded "$run" --timeout=3600s
kubectl -n "$NS" wait --for=condition=Ready inferenceservice/movierec-model --timeout=600s

step "smoke: GET /recommend/1 through the router"
kubectl -n "$NS" port-forward svc/movierec-router 18082:8082 >/dev/null 2>&1 &
pf=$!
trap 'kill $pf 2>/dev/null || true' EXIT
for _ in $(seq 30); do curl -fsS localhost:18082/healthz >/dev/null 2>&1 && break; sleep 1; done
curl -fsS -H 'x-movierec-variant: control' localhost:18082/recommend/1
echo
echo "kind-up: ok. Argo UI: kubectl -n argo port-forward svc/argo-server 2746; Grafana: kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80" >&2
