"""The trainer's Prometheus metrics, pushed to a Pushgateway when one is configured (a batch job
has no scrape endpoint)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway

log = logging.getLogger(__name__)


class TrainerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter("movierec_trainer_runs_total", "Trainer runs by outcome",
                            ["outcome"], registry=self.registry)
        self.duration = Gauge("movierec_trainer_duration_seconds",
                              "Wall time of the last trainer run", registry=self.registry)
        self.last_champion = Gauge("movierec_trainer_last_champion_timestamp_seconds",
                                   "Unix time the trainer last moved the champion alias",
                                   registry=self.registry)

    def push(self, gateway: str, job: str = "movierec_trainer") -> bool:
        """Push to ``gateway`` (host:port); a failed push is logged, never fatal."""
        if not gateway:
            return False
        try:
            push_to_gateway(gateway, job=job, registry=self.registry, timeout=5)
            return True
        except Exception as exc:  # noqa: BLE001 - metrics must not fail a training run
            log.warning("pushgateway %s: push failed: %s", gateway, exc)
            return False
