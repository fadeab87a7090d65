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


class NormPrunedScorer:
    """Exact top-``k`` of ``item_factors @ u - lambda * cost`` that scores only the items that
    can still make the list.

    By Cauchy-Schwarz an item's score is at most ``||f_i|| * ||u||`` (costs are >= 0, so the
    cost term only lowers it). Items are kept sorted by norm, largest first; the first block
    is scored, its k-th best unexcluded score ``tau`` found, and only the items whose bound
    reaches ``tau`` are scored after it: every other item scores strictly below ``tau`` and
    cannot enter the list. ALS/BPR item norms grow with popularity and are heavy-tailed, so a
    request scores a fraction of the catalogue (``fraction_scored`` tracks it); the answer is
    the one a full scoring gives, ties by the lower item index included. The bound ignores
    costs: with cost-aware re-ranking the k-th best score drops and little is pruned (98 % of
    the items scored at lambda 0.5 on the benchmark model), so callers score in full then.
    """

    def __init__(self, item_factors: np.ndarray, costs: np.ndarray | None = None,
                 first_block: int = 1024) -> None:
        factors = np.asarray(item_factors, dtype=np.float32)
        norms = np.linalg.norm(factors.astype(np.float64), axis=1)
        self.order = np.argsort(-norms, kind="stable")
        self.factors = np.ascontiguousarray(factors[self.order])
        # 1 + 1e-5 covers float32 rounding of a dot product of nearly parallel vectors
        self.neg_norms = -(norms[self.order] * (1 + 1e-5))  # ascending, for searchsorted
        self.position = np.empty_like(self.order)
        self.position[self.order] = np.arange(self.order.size)
        self.costs = (None if costs is None else
                      np.ascontiguousarray(np.asarray(costs, dtype=np.float32)[self.order]))
        self.first_block = int(first_block)
        self.scored = 0
        self.requests = 0

    @property
    def fraction_scored(self) -> float:
        n = self.order.size * max(self.requests, 1)
        return self.scored / n

    def top_k(self, u: np.ndarray, k: int, exclude: np.ndarray | None = None,
              cost_lambda: float = 0.0) -> np.ndarray:
        """Original item indices of the ``k`` best, best first, none of ``exclude``.

        Excluded items are masked in the first block only (what ``tau`` is taken from); past
        it they are scored like the others and dropped from the few sorted candidates at the
        end, which takes fewer numpy calls per request than masking every scored range."""
        n = self.order.size
        k = min(k, n)
        if k <= 0:
            return np.empty(0, dtype=np.int64)
        u = np.asarray(u, dtype=np.float32)
        excluded = None
        positions = None
        if exclude is not None and len(exclude):
            exclude = np.asarray(exclude)
            excluded = set(exclude.tolist())
            positions = self.position[exclude]
        lam = np.float32(cost_lambda) if cost_lambda and self.costs is not None else None
        block = min(n, max(self.first_block, 4 * (k + (0 if excluded is None else len(excluded)))))
        scores = self._score(u, 0, block, lam)
        if positions is not None:
            scores[positions[positions < block]] = -np.inf
        # tau: the k-th best of the block (-inf when fewer than k are unexcluded), a lower bound
        # of the final k-th best, since the block is a subset of the catalogue
        tau = float(np.partition(scores, block - k)[block - k])
        end = block
        if block < n:
            unorm = float(np.sqrt(np.dot(u, u)))
            # the items whose bound ||f|| * ||u|| reaches tau are a prefix: [0, end)
            end = n if tau == -np.inf or unorm == 0.0 else max(
                block, int(np.searchsorted(self.neg_norms, -tau / unorm, side="right")))
            if end > block:
                scores = np.concatenate([scores, self._score(u, block, end, lam)])
        self.scored += end
        self.requests += 1
        # the final top k all score >= tau: only those are sorted
        candidates = (np.flatnonzero(scores >= tau) if tau > -np.inf
                      else np.flatnonzero(np.isfinite(scores)))
        items = self.order[candidates]
        # best first; equal scores go to the lower item index (as a full scoring's top_k does)
        best = items[np.lexsort((items, -scores[candidates]))]
        if excluded is None:
            return best[:k]
        out: list[int] = []
        for item in best.tolist():  # excluded items past the first block are still in
            if item not in excluded:
                out.append(item)
                if len(out) == k:
                    break
        return np.asarray(out, dtype=np.int64)

    def _score(self, u: np.ndarray, start: int, end: int, lam: np.float32 | None) -> np.ndarray:
        scores = self.factors[start:end] @ u
        if lam is not None:
            scores -= lam * self.costs[start:end]
        return scores
