"""Fault injection into a batch of valid lines: invalid lines of EVENTS.md's kinds (made by
``movierec_core.invalid.make_invalid``) and duplicate deliveries, all recorded in the ledger."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from movierec_core.invalid import InvalidKind, make_invalid
from simulator.ledger import Ledger


class FaultInjector:
    def __init__(self, invalid_rate: float = 0.0, duplicate_rate: float = 0.0,
                 kinds: Sequence[str] = (), huge_line_bytes: int = 200_000, seed: int = 0,
                 rating_max: int = 5, movie_ids: Sequence[str] = ("heat+1995",)) -> None:
        self.invalid_rate = invalid_rate
        self.duplicate_rate = duplicate_rate
        self.kinds = [InvalidKind(k) for k in kinds] or list(InvalidKind)
        self.huge_line_bytes = huge_line_bytes
        self.rating_max = rating_max
        self.movie_ids = movie_ids
        self.rng = np.random.default_rng(seed)
        self.py_rng = random.Random(seed)
        self._issued: set[bytes] = set()  # invalid lines stay distinct (consumers dedupe bytes)

    @property
    def active(self) -> bool:
        return self.invalid_rate > 0 or self.duplicate_rate > 0

    def _invalid(self, kind: InvalidKind, ledger: Ledger) -> bytes:
        for attempt in range(50):
            user = int(self.rng.integers(0, 10_000_000)) + attempt
            movie = self.movie_ids[int(self.rng.integers(len(self.movie_ids)))]
            line = make_invalid(kind, self.py_rng, user_id=user, movie_id=movie,
                                rating_max=self.rating_max)
            if kind is InvalidKind.HUGE_LINE and len(line) > self.huge_line_bytes:
                line = line[: self.huge_line_bytes]  # still far past the parser's limit
            key = line if len(line) < 1024 else line[:64] + len(line).to_bytes(8, "little")
            if key not in self._issued:
                self._issued.add(key)
                return line
        # This kind has few shapes and they are used up: repeat one, and say so in the ledger.
        ledger.invalid_repeats += 1
        return line

    def apply(self, lines: list[bytes], ledger: Ledger) -> list[bytes]:
        """``lines`` (valid, already counted) with invalid lines and duplicates mixed in."""
        if not self.active or not lines:
            return lines
        n = len(lines)
        out = list(lines)
        if self.duplicate_rate > 0:
            dup = np.flatnonzero(self.rng.random(n) < self.duplicate_rate)
            # A redelivery arrives a little later in the stream than the original.
            for i in dup[::-1].tolist():
                later = min(n, i + 1 + int(self.rng.integers(0, 50)))
                out.insert(later, lines[i])
            ledger.duplicates += len(dup)
        if self.invalid_rate > 0:
            n_bad = int(self.rng.binomial(n, min(1.0, self.invalid_rate)))
            kinds = self.rng.integers(0, len(self.kinds), n_bad)
            where = np.sort(self.rng.integers(0, len(out) + 1, n_bad))[::-1]
            for at, k in zip(where.tolist(), kinds.tolist(), strict=True):
                kind = self.kinds[k]
                out.insert(at, self._invalid(kind, ledger))
                ledger.invalid[kind.value] += 1
        return out
