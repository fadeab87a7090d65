# simulator (issue 4): the streaming service stand-in. `make simulate SIM_ARGS="clock.speed=600"`
.PHONY: simulate simulator-api simulator-endpoint simulator-stream bench-simulate test-simulator

SIM_ARGS ?=

simulate: .venv/.installed  ## users on the simulated clock → Kafka, metadata API on :8080
	$(PY) -m simulator run $(SIM_ARGS)

simulator-api: .venv/.installed  ## only the metadata API (:8080)
	$(PY) -m simulator api $(SIM_ARGS)

simulator-endpoint: .venv/.installed  ## a built-in /recommend endpoint (kind=oracle port=8099)
	$(PY) -m simulator endpoint $(SIM_ARGS)

simulator-stream: .venv/.installed  ## as fast as possible into data/simulator/movielog.txt
	$(PY) -m simulator stream $(SIM_ARGS)

bench-simulate: .venv/.installed
	$(PY) bench/simulate.py $(BENCH_ARGS)

test-simulator: .venv/.installed
	$(PY) -m pytest -q -p no:cacheprovider tests/simulator $(PYTEST_ARGS)
