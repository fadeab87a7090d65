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

    Instead of a partition of all n scores (introselect: 0.1-0.7 ms for 20K scores, slower on
    skewed score distributions), the maxima of ``_BLOCKS`` blocks bound the k-th best score
    from below (the k largest block maxima are k distinct scores), so only the few blocks
    holding scores at or above that bound are searched and sorted: one pass over the scores
    instead of a partition (~4x less work per request at 20K items).
    """
    if exclude is not None and len(exclude):
        scores[exclude] = -np.inf
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    candidates = None
    blocks = min(_BLOCKS, n // 4)
    if blocks >= 4 * k:
        width = n // blocks
        body = blocks * width
        # block b = scores b, b + blocks, b + 2·blocks, ...: a reduction over the leading axis
        # is vectorised across blocks (4x faster than over short contiguous rows)
        maxima = scores[:body].reshape(width, blocks).max(axis=0)
        bound = np.partition(maxima, blocks - k)[blocks - k]
        if np.isfinite(bound):
            # every score >= bound sits in a block whose maximum is >= bound: look only there
            # (and in the few scores past the last whole block); ties at the k-th are included
            hot = np.flatnonzero(maxima >= bound)
            inside = (np.arange(width)[:, None] * blocks + hot).ravel()
            inside = inside[scores[inside] >= bound]
            tail = np.flatnonzero(scores[body:] >= bound) + body
            candidates = np.concatenate([inside, tail]) if tail.size else inside
    if candidates is None:
        candidates = np.arange(n) if k == n else np.flatnonzero(scores >= np.partition(
            scores, n - k)[n - k])
    best = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
    return best[np.isfinite(scores[best])]


_BLOCKS = 256


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
