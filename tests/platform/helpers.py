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
