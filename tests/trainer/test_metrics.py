"""The trainer's Prometheus metrics and a Pushgateway that is down (never fatal)."""

from __future__ import annotations

import socket

from prometheus_client import generate_latest

from trainer.metrics import TrainerMetrics


def test_metric_names_and_unreachable_pushgateway():
    m = TrainerMetrics()
    m.runs.labels(outcome="success").inc()
    m.duration.set(12.5)
    m.last_champion.set(1_700_000_000)
    text = generate_latest(m.registry).decode()
    assert 'movierec_trainer_runs_total{outcome="success"} 1.0' in text
    assert "movierec_trainer_duration_seconds 12.5" in text
    assert "movierec_trainer_last_champion_timestamp_seconds 1.7e+09" in text
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert m.push(f"127.0.0.1:{port}") is False
    assert m.push("") is False
