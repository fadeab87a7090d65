"""Pure ranking functions: top-k with exclusion and cost-aware re-ranking. No I/O."""

from __future__ import annotations

from collections.abc import Collection, Iterable

import numpy as np


def cost_adjusted(scores: np.ndarray, costs: np.ndarray | None, cost_lambda: float) -> np.ndarray:
    """``score - lambda * normalised cost`` as a new float array (a copy even when lambda is 0)."""
    if cost_lambda and costs is not None:
        return scores - np.float32(cost_lambda) * costs
    return np.array(scores, dtype=np.float32, copy=True)


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first, never one of ``exclude``.

    ``scores`` is modified in place (excluded entries become -inf): pass a copy. Ties break by
    the lower index, so equal inputs give equal lists.
    """
    if exclude is not None and len(exclude):
        scores[exclude] = -np.inf
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        candidates = np.argpartition(scores, n - k)[n - k:]
        kth = scores[candidates].min()
        if np.count_nonzero(scores == kth) > np.count_nonzero(scores[candidates] == kth):
            # a tie straddles the cut: the partition picked arbitrary ones, take the lowest
            better = np.flatnonzero(scores > kth)
            ties = np.flatnonzero(scores == kth)
            candidates = np.concatenate([better, ties[:k - better.size]])
    else:
        candidates = np.arange(n)
    best = candidates[np.lexsort((candidates, -scores[candidates]))]
    return best[np.isfinite(scores[best])]


def first_unseen(ordered: Iterable[int], k: int, seen: Collection[int]) -> list[int]:
    """The first ``k`` entries of a ranked list (cold start, popularity) not in ``seen``."""
    out: list[int] = []
    for index in ordered:
        index = int(index)
        if index not in seen:
            out.append(index)
            if len(out) == k:
                break
    return out
