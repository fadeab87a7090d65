# The local single-node Kubernetes cluster (issue 16): python -m cluster, docs/cluster.md.
# Opt-in (root, minutes cold): not part of `make test`.
.PHONY: cluster-deps cluster-up cluster-down cluster-reset cluster-status images cluster-smoke kserve-up prometheus-build cluster-demo argo-up cluster-test

CLUSTER_APT := containerd runc containernetworking-plugins etcd-server iptables conntrack \
  buildah mmdebstrap uidmap fuse-overlayfs
.cache/cluster-apt.done:
	@mkdir -p .cache
	@missing=""; for p in $(CLUSTER_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# the packages may start system daemons on machines with an init system; the cluster runs its own
	-@for s in containerd etcd; do (systemctl disable --now $$s || service $$s stop) >/dev/null 2>&1; done
	touch $@

cluster-deps: .cache/cluster-apt.done

cluster-up: .venv/.installed cluster-deps
	PATH="$$PATH:/usr/local/go/bin" $(PY) -m cluster up

cluster-down: .venv/.installed
	$(PY) -m cluster down

cluster-reset: .venv/.installed
	$(PY) -m cluster reset

cluster-status: .venv/.installed
	$(PY) -m cluster status

# every image the chart references, built here with buildah (no registry) and imported into the node
images: .venv/.installed cluster-deps kafka-fetch
	$(PY) -m cluster images $(IMAGES)

# the project's image on the cluster: DNS, Service, NodePort, logs, exec (restricted policy)
cluster-smoke: .venv/.installed
	$(PY) -m cluster smoke

# KServe v0.20.0's controller (built from its Go module) with CRDs and webhooks (issue 17)
kserve-up: .venv/.installed k8s-tools
	PATH="$$PATH:/usr/local/go/bin" $(PY) -m cluster.kserve up

# Prometheus v3.16 from its Go module (Debian's 2.42 lacks Kubernetes service discovery);
# docker/prometheus.Dockerfile copies it (make images runs this first)
prometheus-build: .venv/.installed
	PATH="$$PATH:/usr/local/go/bin" $(PY) -c "from cluster import addons, gobuild; gobuild.build(addons.prometheus_build())"

# the platform on the local cluster: KServe, helm install, the closed loop from the host, report,
# helm test, helm uninstall (issue 17; docs/kubernetes.md). DEMO_ARGS=--quick for a small run.
cluster-demo: cluster-up images kserve-up
	$(PY) -m demo --target cluster $(DEMO_ARGS)

# Argo Workflows v3.7.18 built from its module (controller, argoexec, server with its UI built
# from the npm registry's packages), installed in namespace argo acting in movierec (issue 18)
argo-up: .venv/.installed k8s-tools
	PATH="$$PATH:/usr/local/go/bin" $(PY) -m cluster.argo up

# Debian's Chromium and playwright-core (npm) for the Argo UI screenshot
.cache/screenshot/node_modules/playwright-core:
	@mkdir -p .cache/screenshot
	@dpkg -s chromium >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }
	cd .cache/screenshot && npm install --no-audit --no-fund --loglevel=error playwright-core@1

# Argo's pipeline, a promotion and a rollback by traffic weight, cron, mutex, alerts, the UI;
# writes bench/results/cluster.json (issue 18; opt-in: about 40 minutes warm)
cluster-test: cluster-up images kserve-up argo-up .cache/screenshot/node_modules/playwright-core
	$(PY) -m demo.cluster_test $(CLUSTER_TEST_ARGS)
