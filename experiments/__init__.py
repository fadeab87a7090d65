"""Experiments: the A/B router, online metrics from telemetry, statistics, canary rollouts and
reports (issue 8). ``python -m experiments {router,canary,report,render-istio,assign}``."""
