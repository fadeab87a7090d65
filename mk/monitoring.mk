# Monitoring (issue 9): alert rules unit-tested with promtool, demo Prometheus config checked.
.PHONY: test-monitoring

PROMTOOL ?= promtool

test-monitoring: apt-deps
	$(PROMTOOL) check rules monitoring/alerts.yaml
	$(PROMTOOL) test rules monitoring/tests/*.yaml
	$(PROMTOOL) check config monitoring/prometheus-demo.yml

TEST_EXTRA += test-monitoring
