# Experiments (issue 8): router, statistics, canary controller, reports, closed-loop drills.
.PHONY: test-experiments test-experiments-drills bench-router experiments-router experiments-istio

# unit tests + router process tests against tiny real HTTP servers (~40 s)
test-experiments: .venv/.installed
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests/experiments $(PYTEST_ARGS)

# closed-loop canary drills (real broker, simulator, router, canary); reports in artifacts/experiments/
test-experiments-drills: .venv/.installed kafka-fetch
	$(PY) -m pytest -q -p no:cacheprovider tests/experiments/test_drills.py $(PYTEST_ARGS)

# router overhead vs a bare server -> bench/results/router.json
bench-router: .venv/.installed
	$(PY) bench/router.py $(BENCH_ARGS)

# a local A/B router on :8082 (override variants/weights with EXPERIMENT_ARGS)
experiments-router: .venv/.installed
	$(PY) -m experiments router $(EXPERIMENT_ARGS)

# the VirtualService + DestinationRule for the configured experiment, validated
experiments-istio: .venv/.installed
	$(PY) -m experiments render-istio $(EXPERIMENT_ARGS)
