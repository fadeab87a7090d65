# Kubernetes delivery (issue 10): chart, Argo workflows, manifests, validation toolchain.
# Tools are built from source into .cache/ (helm, kubeconform via the Go module proxy; core
# Kubernetes JSON schemas from the k8s.io/kubernetes OpenAPI document; KServe CRDs converted).
TEST_PREREQS += k8s-tools

.PHONY: k8s-tools test-k8s chart-sync manifests kind-up kind-down k8s-apiserver-test

# idempotent: each tool/schema set carries a version stamp; a warm run takes about a second
k8s-tools: .venv/.installed
	@PATH="$$PATH:/usr/local/go/bin" scripts/install-k8s-tools.sh

# helm lint/template of every ci/*-values.yaml, kubeconform -strict, policy and golden tests
test-k8s: k8s-tools
	$(PY) -m pytest -q -p no:cacheprovider tests/k8s $(PYTEST_ARGS)

# copy monitoring/alerts.yaml and monitoring/dashboards/*.json into the chart
chart-sync:
	scripts/k8s-chart-sync.sh

# regenerate manifests/movierec.yaml and workflows/*.yaml from the chart
manifests: k8s-tools chart-sync
	$(PY) tools/k8s_render.py write

# for users with Docker and kind (no Docker daemon on the build machine: untested here)
kind-up:
	scripts/kind-up.sh

kind-down:
	scripts/kind-down.sh

# opt-in: apply every render to a real kube-apiserver + etcd (Debian etcd-server; kube-apiserver
# built from k8s.io/kubernetes through the Go module proxy, ~10 min cold); not part of `make test`
k8s-apiserver-test: .venv/.installed
	scripts/k8s-apiserver-test.sh
