"""Helpers for tests that run the whole platform (``demo.platform.Platform``)."""

from __future__ import annotations

import threading
from collections import Counter

from movierec_core import RecommendationRequest, parse


class TeeSink:
    """Sends to the platform's Kafka sink and keeps the status of every recommendation line."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.statuses: list[int] = []

    def send(self, lines: list[bytes]) -> None:
        statuses = [e.status for e in map(parse, (ln for ln in lines if b"recommendation request" in ln))
                    if isinstance(e, RecommendationRequest)]
        with self.lock:
            self.statuses.extend(statuses)
        self.inner.send(lines)

    def flush(self) -> None:
        self.inner.flush()

    def mark(self) -> int:
        with self.lock:
            return len(self.statuses)

    def since(self, mark: int) -> Counter:
        with self.lock:
            return Counter(self.statuses[mark:])


def availability(counts: Counter) -> float:
    total = sum(counts.values())
    return counts[200] / total if total else float("nan")


def loop_through_router(p, speed: float) -> TeeSink:
    """Start the simulator's closed loop with every user calling the platform's router, until
    stopped; returns the sink that records the status of every recommendation request."""
    tee = TeeSink(p.sink)
    p.sim.use("url", f"http://127.0.0.1:{p.ports['router']}")
    p.sim.start(minutes=0, sink=tee, speed=speed)
    return tee


def trained_platform(run_dir, *, restart_ingestor: bool = False, **settings):
    """The platform up to its first models: broker, metadata API, ingestor, the history of
    popularity lists landed, ALS (champion) and popularity trained on a snapshot. Closed again if
    any step fails; the caller closes it otherwise."""
    from rich.console import Console

    from demo.platform import DemoSettings, Platform

    p = Platform(DemoSettings(live_minutes=0, prometheus=False, run_dir=run_dir, **settings),
                 Console(stderr=True))
    try:
        p.start_infrastructure()
        p.start_ingestor(restart=restart_ingestor)
        p.history_and_champion()
    except BaseException:
        p.close()
        raise
    return p
