"""Helpers for tests that run the whole platform (``demo.platform.Platform``)."""

from __future__ import annotations

import threading
import time
from collections import Counter

from movierec_core import RecommendationRequest, parse
from simulator.recommenders import TIMEOUT_ERROR


class TeeSink:
    """Sends to the platform's Kafka sink and keeps the status of every recommendation line,
    and each failed request itself (with the wall-clock time it was sent on) for diagnosis."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.statuses: list[int] = []
        self.failed: list[tuple[int, str, RecommendationRequest]] = []  # (index, wall time, …)

    def send(self, lines: list[bytes]) -> None:
        requests = [e for e in map(parse, (ln for ln in lines if b"recommendation request" in ln))
                    if isinstance(e, RecommendationRequest)]
        wall = time.strftime("%H:%M:%S")
        with self.lock:
            for r in requests:
                if r.status != 200:
                    self.failed.append((len(self.statuses), wall, r))
                self.statuses.append(r.status)
        self.inner.send(lines)

    def flush(self) -> None:
        self.inner.flush()

    def mark(self) -> int:
        with self.lock:
            return len(self.statuses)

    def since(self, mark: int) -> Counter:
        with self.lock:
            return Counter(self.statuses[mark:])

    def failed_since(self, mark: int) -> list[tuple[str, RecommendationRequest]]:
        """The failed requests after ``mark`` with the wall-clock time they were sent on."""
        with self.lock:
            return [(wall, r) for i, wall, r in self.failed if i >= mark]


def _readable(failed: list[tuple[str, RecommendationRequest]]) -> list[str]:
    return [f"{wall} user {r.user_id} via {r.server}: status {r.status} after "
            f"{r.response_ms} ms: {r.error}" for wall, r in failed]


def assert_no_failed_request(tee: TeeSink, mark: int, late_share: float = 0.001) -> None:
    """No user request since ``mark`` failed: no error status, no refused or broken
    connection. Late answers (past the caller's 600-ms deadline, logged as timeouts) are a
    matter of speed on two cores shared with the whole platform and the harness, which tests
    do not judge: at most ``late_share`` of the requests, each listed when over."""
    counts = tee.since(mark)
    failed = tee.failed_since(mark)
    late = [(wall, r) for wall, r in failed if r.error == TIMEOUT_ERROR]
    assert counts and counts[200] + len(late) == sum(counts.values()), (counts, _readable(failed))
    assert len(late) <= late_share * sum(counts.values()), (counts, _readable(late))


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
