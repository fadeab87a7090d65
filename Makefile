# movierec: one Makefile, fragments per area in mk/*.mk.
# Fresh machine: `make demo` (the platform end to end) and `make test` (the whole suite).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
PIP := .venv/bin/pip
export PYTHONPATH := $(CURDIR)

# Fragments append to these.
TEST_PREREQS :=
TEST_EXTRA :=
DEMO_PREREQS :=

include $(sort $(wildcard mk/*.mk))

.PHONY: help install apt-deps kafka-fetch kafka-up kafka-down lint test test-fast demo clean

help:
	@echo "make install     build .venv (idempotent) and fetch the Kafka jars"
	@echo "make demo        run the platform end to end on embedded defaults"
	@echo "make test        the whole suite (ruff + pytest incl. real-broker integration tests)"
	@echo "make kafka-up    start a local Apache Kafka broker (KRaft) on 127.0.0.1:\$${KAFKA_PORT:-9092}"
	@echo "make kafka-down  stop it"
	@echo "make cluster-up  a real single-node Kubernetes on this machine (root; docs/cluster.md)"
	@echo "make images      build every image of docker/ and import it into the cluster"
	@echo "make cluster-smoke / cluster-down / cluster-reset / kserve-up"

.venv/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PIP) install -q -U pip setuptools wheel
	$(PIP) install -q -c constraints.txt -e '.[all,dev]'
	touch $@

# Debian packages the suite and the demo run for real (prometheus/promtool, pushgateway, redis).
APT_PACKAGES := prometheus prometheus-pushgateway redis-server wrk
.cache/apt.done:
	@mkdir -p .cache
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# the packages start system services; the project starts its own instances on its own ports
	-@for s in prometheus prometheus-pushgateway redis-server; do (systemctl stop $$s || service $$s stop) >/dev/null 2>&1; done
	touch $@

apt-deps: .cache/apt.done

install: .venv/.installed kafka-fetch apt-deps

kafka-fetch: .venv/.installed
	$(PY) -m devstack.kafka fetch

kafka-up: kafka-fetch
	$(PY) -m devstack.kafka up --port $${KAFKA_PORT:-9092}

kafka-down:
	$(PY) -m devstack.kafka down

lint: .venv/.installed
	$(PY) -m ruff check .

test: install $(TEST_PREREQS)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider tests $(PYTEST_ARGS)
	@for t in $(TEST_EXTRA); do $(MAKE) --no-print-directory $$t || exit 1; done

test-fast: .venv/.installed
	$(PY) -m pytest -q -m "not integration and not slow" tests

demo: install $(DEMO_PREREQS)
	$(PY) -m demo $(DEMO_ARGS)

clean:
	$(PY) -m devstack.kafka down || true
	rm -rf .cache/kafka-data .pytest_cache .ruff_cache
