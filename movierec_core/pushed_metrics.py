"""Metrics of batch steps (trainer, canary, pipeline) pushed to a Prometheus Pushgateway.

A batch job has no scrape endpoint; the Pushgateway keeps the last push of each group and
Prometheus scrapes it. Each group (``job`` label) is replaced whole on every push, so a value
that only some runs set lives in a group of its own: the champion's timestamp is pushed by
whoever moves the alias (a training run that promotes, ``trainer promote``, a canary that
promotes) to the ``movierec_champion`` group, never as a zero by a run that did not move it.
A failed push is logged, never fatal.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

log = logging.getLogger(__name__)

CHAMPION_JOB = "movierec_champion"


def push(gateway: str, job: str, registry: CollectorRegistry) -> bool:
    if not gateway:
        return False
    try:
        push_to_gateway(gateway, job=job, registry=registry, timeout=5)
        return True
    except Exception as exc:  # noqa: BLE001 - metrics must never fail the step
        log.warning("pushgateway %s: push of %s failed: %s", gateway, job, exc)
        return False


class ChampionMetrics:
    """The champion group: ``movierec_trainer_last_champion_timestamp_seconds`` (what the
    MovierecNoNewChampion alert watches), on a registry of its own per push."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.last_champion = Gauge("movierec_trainer_last_champion_timestamp_seconds",
                                   "Unix time the champion alias last moved",
                                   ["model", "version"], registry=self.registry)


def push_champion_moved(gateway: str, model_name: str, version: str,
                        at: float | None = None) -> bool:
    """Push the champion's timestamp for ``model_name``, now or at ``at``."""
    metrics = ChampionMetrics()
    metrics.last_champion.labels(model_name, version).set(time.time() if at is None else at)
    return push(gateway, CHAMPION_JOB, metrics.registry)
