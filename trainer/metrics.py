"""The trainer's Prometheus metrics, pushed to a Pushgateway when one is configured (a batch job
has no scrape endpoint)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge

from movierec_core.pushed_metrics import push

log = logging.getLogger(__name__)


class TrainerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter("movierec_trainer_runs_total", "Trainer runs by outcome",
                            ["outcome"], registry=self.registry)
        self.duration = Gauge("movierec_trainer_duration_seconds",
                              "Wall time of the last trainer run", registry=self.registry)

    def push(self, gateway: str, job: str = "movierec_trainer") -> bool:
        """Push to ``gateway`` (host:port); a failed push is logged, never fatal. The champion's
        timestamp is pushed apart (``movierec_core.pushed_metrics.push_champion_moved``)."""
        return push(gateway, job, self.registry)
