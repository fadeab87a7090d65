# Model server (issue 7): python -m model_server, its tests and benchmarks. See docs/model_server.md.
.PHONY: wrk serve-model test-model-server bench-serve bench-serve-quick bench-cost-tradeoff

# wrk (Debian) is the load generator of bench/serve.py; installed only when missing
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }

# serve the registry's champion on :8090 (override: make serve-model MS_ARGS="serving.http_port=8091")
serve-model: .venv/.installed
	$(PY) -m model_server serving.http_port=8090 $(MS_ARGS)

test-model-server: .venv/.installed
	$(PY) -m pytest -q -p no:cacheprovider tests/model_server $(PYTEST_ARGS)

# full size (1M users x 20K movies x 64 factors): a few minutes, run it on a quiet machine
bench-serve: .venv/.installed wrk
	$(PY) bench/serve.py

bench-serve-quick: .venv/.installed wrk
	$(PY) bench/serve.py --quick

bench-cost-tradeoff: .venv/.installed
	$(PY) bench/cost_tradeoff.py
