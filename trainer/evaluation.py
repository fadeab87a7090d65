"""Ranking metrics and leakage-safe splits. Pure functions, no I/O.

Metrics (binary relevance, per user, then averaged over evaluated users):
precision@k = hits/k; recall@k = hits/|relevant|; nDCG@k = DCG/IDCG with IDCG over
min(|relevant|, k) positions; MAP@k = Σ_{hit ranks r≤k} precision@r / min(|relevant|, k);
catalogue coverage@k = distinct recommended items / catalogue size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

METRICS = ("precision", "recall", "ndcg", "map")


def per_user_metrics(recs: np.ndarray, relevant: Sequence[Iterable[int]], k: int) -> dict[str, np.ndarray]:
    """Per-user precision/recall/nDCG/MAP at ``k`` for a (users × ≥k) array of recommended
    item indices (-1 = empty slot) and each user's set of relevant items."""
    n = len(relevant)
    out = {m: np.zeros(n, dtype=np.float64) for m in METRICS}
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for u in range(n):
        rel = set(int(i) for i in relevant[u])
        if not rel:
            continue
        top = recs[u, :k]
        hit = np.array([int(i) in rel for i in top if i >= 0] + [False] * int((top < 0).sum()),
                       dtype=bool)
        hits = int(hit.sum())
        out["precision"][u] = hits / k
        out["recall"][u] = hits / len(rel)
        ideal = discounts[: min(len(rel), k)].sum()
        out["ndcg"][u] = float(discounts[hit].sum() / ideal)
        if hits:
            ranks = np.flatnonzero(hit) + 1
            prec_at_hits = np.arange(1, hits + 1) / ranks
            out["map"][u] = float(prec_at_hits.sum() / min(len(rel), k))
    return out


def summarise(recs: np.ndarray, relevant: Sequence[Iterable[int]], ks: Sequence[int],
              n_items: int, mask: np.ndarray | None = None) -> dict[str, float]:
    """Mean metrics over the users selected by ``mask`` (all by default), for each k."""
    sel = np.ones(len(relevant), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    res: dict[str, float] = {"users": int(sel.sum())}
    if not sel.any():
        return res
    for k in ks:
        per = per_user_metrics(recs[sel], [relevant[i] for i in np.flatnonzero(sel)], k)
        for m in METRICS:
            res[f"{m}@{k}"] = round(float(per[m].mean()), 6)
        top = recs[sel, :k]
        res[f"coverage@{k}"] = round(float(np.unique(top[top >= 0]).size / max(n_items, 1)), 6)
    return res


@dataclass(frozen=True)
class TemporalSplit:
    """Events before ``split_time`` train, events at/after it test."""

    split_time: pd.Timestamp
    train: pd.DataFrame
    test: pd.DataFrame


def split_time_at_quantile(times: pd.Series, fraction_after: float) -> pd.Timestamp:
    """The time T with about ``fraction_after`` of events at or after it."""
    if not 0 < fraction_after < 1:
        raise ValueError(f"test fraction must be in (0, 1), got {fraction_after}")
    ordered = np.sort(pd.to_datetime(times).to_numpy())
    if ordered.size == 0:
        raise ValueError("no events to split")
    idx = min(int(ordered.size * (1.0 - fraction_after)), ordered.size - 1)
    return pd.Timestamp(ordered[idx])


def temporal_split(events: pd.DataFrame, split_time: pd.Timestamp, time_col: str = "time") -> TemporalSplit:
    """Raw events strictly before ``split_time`` → train; the rest → test.

    Splitting *raw events* (not aggregated pairs) is what keeps the future out: every training
    feature (confidence, popularity, segments, seen sets) is computed from ``train`` only.
    """
    before = events[time_col] < split_time
    return TemporalSplit(pd.Timestamp(split_time), events[before].copy(), events[~before].copy())
