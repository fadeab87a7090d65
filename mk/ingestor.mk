# Ingestor (issue 5): python -m ingestor, its tests and benchmark. See docs/ingestor.md.
.PHONY: ingest ingest-snapshot ingest-compact test-ingestor bench-ingest bench-ingest-quick

# consume the local broker (make kafka-up) into data/lake and data/online.sqlite; Ctrl-C stops
ingest: .venv/.installed
	$(PY) -m ingestor $(INGEST_ARGS)

ingest-snapshot: .venv/.installed
	$(PY) -m ingestor snapshot $(INGEST_ARGS)

ingest-compact: .venv/.installed
	$(PY) -m ingestor compact $(INGEST_ARGS)

# unit + real-broker/redis integration tests of the ingestor, online store and snapshots
test-ingestor: .venv/.installed apt-deps kafka-fetch
	$(PY) -m pytest -q -p no:cacheprovider tests/ingestor $(PYTEST_ARGS)

bench-ingest: .venv/.installed kafka-fetch
	$(PY) bench/ingest.py

bench-ingest-quick: .venv/.installed kafka-fetch
	$(PY) bench/ingest.py --quick
