"""Sticky assignment of users to variants: a stable hash of (experiment, user) into 10,000
buckets, and contiguous bucket ranges per variant.

Variant ``i`` owns ``[bounds[i], bounds[i+1])`` where the bounds are the rounded cumulative
weights, in config order. Changing weights therefore moves only buckets at range edges: when
the last variant (the challenger) grows from 5 % to 25 %, exactly the 2,000 buckets
``[7500, 9500)`` move, all from its neighbour, and nobody leaves the challenger.
Never Python's ``hash()``: it is salted per process.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BUCKETS = 10_000


def bucket(experiment: str, user_id: int) -> int:
    """The user's bucket in ``[0, 10000)``: sha256 of ``"<experiment>:<user_id>"``, first 8
    bytes big-endian, mod 10,000. Pinned by test vectors; changing it reshuffles everyone."""
    digest = hashlib.sha256(f"{experiment}:{int(user_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Allocation:
    """Variants in order with the first bucket of each; ``bounds[-1] == BUCKETS``."""

    variants: tuple[str, ...]
    bounds: tuple[int, ...]  # len(variants) + 1 entries, 0 ... 10000

    @classmethod
    def from_weights(cls, weights: Mapping[str, float] | Sequence[tuple[str, float]]) -> Allocation:
        items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        if not items:
            raise ValueError("an experiment needs at least one variant")
        names = [name for name, _ in items]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate variant names: {names}")
        values = [float(w) for _, w in items]
        if any(w < 0 for w in values):
            raise ValueError(f"negative weight: {dict(items)}")
        total = sum(values)
        if total <= 0:
            raise ValueError("weights sum to zero")
        bounds, running = [0], 0.0
        for w in values:
            running += w
            bounds.append(round(running / total * BUCKETS))
        bounds[-1] = BUCKETS
        return cls(tuple(names), tuple(bounds))

    def ranges(self) -> dict[str, range]:
        return {v: range(self.bounds[i], self.bounds[i + 1]) for i, v in enumerate(self.variants)}

    def variant_of_bucket(self, b: int) -> str:
        # the last bound <= b; empty ranges (weight 0) are skipped because their bound repeats
        i = bisect.bisect_right(self.bounds, b) - 1
        return self.variants[min(i, len(self.variants) - 1)]

    def variant_of(self, experiment: str, user_id: int) -> str:
        return self.variant_of_bucket(bucket(experiment, user_id))

    def shares(self) -> dict[str, float]:
        """Expected traffic share of each variant (what the SRM check compares against)."""
        return {v: len(r) / BUCKETS for v, r in self.ranges().items()}


def moved_buckets(old: Allocation, new: Allocation) -> dict[tuple[str, str], int]:
    """How many buckets change variant between two allocations, by (from, to)."""
    moves: dict[tuple[str, str], int] = {}
    for b in range(BUCKETS):
        a, c = old.variant_of_bucket(b), new.variant_of_bucket(b)
        if a != c:
            moves[(a, c)] = moves.get((a, c), 0) + 1
    return moves
