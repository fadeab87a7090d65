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
import scipy.sparse as sp

METRICS = ("precision", "recall", "ndcg", "map")


def per_user_metrics(recs: np.ndarray, relevant: Sequence[Iterable[int]], k: int) -> dict[str, np.ndarray]:
    """Per-user precision/recall/nDCG/MAP at ``k`` for a (users × ≥k) array of recommended
    item indices (-1 = empty slot) and each user's relevant items. A relevant entry -1 is an
    item the model cannot know (unseen in training): it counts in |relevant|, never as a hit."""
    n = len(relevant)
    lists = [np.asarray(list(r), dtype=np.int64) for r in relevant]
    n_rel = np.array([np.unique(r[r >= 0]).size + int((r < 0).sum()) for r in lists], dtype=np.float64)
    top = np.asarray(recs, dtype=np.int64)[:, :k]
    if top.shape[1] < k:
        top = np.hstack([top, np.full((n, k - top.shape[1]), -1, dtype=np.int64)])
    hit = np.zeros((n, k), dtype=bool)
    if n:
        rows = np.repeat(np.arange(n), [r.size for r in lists])
        cols = np.concatenate(lists) if lists else np.empty(0, np.int64)
        keep = cols >= 0
        width = int(max(top.max(initial=-1), cols.max(initial=-1))) + 1
        rel = sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, max(width, 1)))
        valid = top >= 0
        r_idx = np.broadcast_to(np.arange(n)[:, None], top.shape)
        hit[valid] = np.asarray(rel[r_idx[valid], top[valid]]).ravel() > 0
    hits = hit.sum(axis=1)
    safe = np.maximum(n_rel, 1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(safe, k).astype(int) - 1]
    cum_hits = np.cumsum(hit, axis=1)
    prec_at = cum_hits / np.arange(1, k + 1)
    has = n_rel > 0
    return {
        "precision": np.where(has, hits / k, 0.0),
        "recall": np.where(has, hits / safe, 0.0),
        "ndcg": np.where(has, (hit * discounts).sum(axis=1) / ideal, 0.0),
        "map": np.where(has, (prec_at * hit).sum(axis=1) / np.minimum(safe, k), 0.0),
    }


def summarise(recs: np.ndarray, relevant: Sequence[Iterable[int]], ks: Sequence[int],
              n_items: int, mask: np.ndarray | None = None,
              per_user: dict[int, dict[str, np.ndarray]] | None = None) -> dict[str, float]:
    """Mean metrics over the users selected by ``mask`` (all by default), for each k.
    ``per_user`` (k → :func:`per_user_metrics` over all users) avoids recomputation."""
    sel = np.ones(len(relevant), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    res: dict[str, float] = {"users": int(sel.sum())}
    if not sel.any():
        return res
    for k in ks:
        if per_user is not None and k in per_user:
            per = {m: v[sel] for m, v in per_user[k].items()}
        else:
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
