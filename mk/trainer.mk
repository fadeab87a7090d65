# trainer (issue 6): train on the latest lake snapshot, registry commands, benchmark, tests.
.PHONY: trainer-train trainer-list trainer-test trainer-bench trainer-bench-quick trainer-movielens

TRAINER_ARGS ?=

trainer-train: .venv/.installed  ## train on the latest snapshot → challenger (champion if none)
	$(PY) -m trainer $(TRAINER_ARGS)

trainer-list: .venv/.installed
	$(PY) -m trainer list $(TRAINER_ARGS)

trainer-test: .venv/.installed
	$(PY) -m pytest -q -p no:cacheprovider tests/trainer

trainer-bench: .venv/.installed  ## full size: 1M users × 20K movies (minutes; run once)
	$(PY) bench/train.py

trainer-bench-quick: .venv/.installed
	$(PY) bench/train.py --quick

trainer-movielens: .venv/.installed  ## the offline protocol's P@10 / nDCG@10 on ml-latest-small
	$(PY) -m trainer movielens-eval --interactions ../shared/data/ml-latest-small/ratings.csv
