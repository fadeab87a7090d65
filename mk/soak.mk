# Soak (issue 11 item 2): hours of simulated time on the whole platform — scheduled retraining,
# an injected drift the drift job detects and retrains on, a canary promotion and a canary
# rollback; report + watch-through plot (docs/soak-report.md, docs/soak-watch-through.png).
# Not part of CI. See docs/soak.md.
.PHONY: soak soak-quick

# SOAK_ARGS: e.g. "--users 5000 --hours 12" (defaults: 4,000 users, 10 simulated hours)
soak: install
	$(PY) -m demo.soak $(SOAK_ARGS)

# a smoke run (1,500 users, 6 simulated hours; docs/ untouched), a few minutes
soak-quick: install
	$(PY) -m demo.soak --quick $(SOAK_ARGS)
