"""Prometheus metrics of the experiments package (names fixed by the issue and the alerts).

Each process builds its own :class:`ExperimentMetrics` on its own registry (tests start many
routers in one process); ``/metrics`` serves that registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# The router must add < 2 ms: fine buckets at the low end, up to the caller's 600 ms deadline.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0, 2.5,
)

__all__ = ["CONTENT_TYPE_LATEST", "ExperimentMetrics"]


class ExperimentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "movierec_router_requests", "Recommendation requests answered by the router",
            ["variant", "status"], registry=r,
        )
        self.duration = Histogram(
            "movierec_router_request_duration_seconds",
            "Time from request to response at the router, upstream included",
            ["variant"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.weight = Gauge(
            "movierec_router_variant_weight", "Traffic weight of a variant in percent",
            ["experiment", "variant"], registry=r,
        )
        self.promotions = Counter(
            "movierec_canary_promotions", "Canary challengers promoted to 100 %", registry=r,
        )
        self.rollbacks = Counter(
            "movierec_canary_rollbacks", "Canary challengers rolled back", registry=r,
        )
        self.watch_through = Gauge(
            "movierec_experiment_watch_through",
            "Share of recommendation requests followed by a watch of a recommended movie",
            ["experiment", "variant"], registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
