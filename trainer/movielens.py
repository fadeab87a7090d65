"""MovieLens CSVs (``userId,movieId,rating,timestamp``): the Microsoft Recommenders offline
protocol (per-user random 75/25 split, P@10 / nDCG@10, binary relevance) and
``batch-recommend`` (train the production configuration, write top-k per user)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec_core.models import Recommender, make_model
from trainer.evaluation import summarise

COLUMNS = ("userId", "movieId", "rating", "timestamp")


class InputError(ValueError):
    """Input the trainer refuses, with a message a person can act on."""


def read_ratings(path: Path | str, rating_min: float = 0.5, rating_max: float = 5.0) -> pd.DataFrame:
    """Read and check a MovieLens ratings CSV.

    Rules: missing file, missing columns or zero rows → :class:`InputError`. Rows whose ids are
    not integers, or whose rating is NaN or outside ``rating_min..rating_max`` are refused
    (:class:`InputError` naming the first bad line), because silently training on a corrupt
    export hides a broken pipeline. Duplicate (user, movie) rows keep the latest.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"interactions file not found: {p}")
    try:
        df = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise InputError(f"interactions file is empty: {p}") from None
    missing = [c for c in COLUMNS[:3] if c not in df.columns]
    if missing:
        raise InputError(f"{p}: missing column(s) {missing}; expected header {','.join(COLUMNS)}")
    if df.empty:
        raise InputError(f"{p}: no interactions (header only)")
    for col in ("userId", "movieId"):
        ids = pd.to_numeric(df[col], errors="coerce")
        bad = ids.isna() | (ids != ids.round())
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise InputError(f"{p}:{line}: {col} is not an integer: {df[col].iloc[line - 2]!r}")
        df[col] = ids.astype(np.int64)
    rating = pd.to_numeric(df["rating"], errors="coerce")
    bad = rating.isna() | (rating < rating_min) | (rating > rating_max)
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise InputError(f"{p}:{line}: rating {df['rating'].iloc[line - 2]!r} is NaN or outside "
                         f"{rating_min}..{rating_max} ({int(bad.sum())} bad rows)")
    df["rating"] = rating.astype(np.float32)
    if "timestamp" not in df.columns:
        df["timestamp"] = 0
    df = df.sort_values("timestamp", kind="stable").drop_duplicates(["userId", "movieId"], keep="last")
    return df.reset_index(drop=True)


@dataclass
class Encoded:
    matrix: sp.csr_matrix
    user_ids: np.ndarray  # sorted
    item_ids: np.ndarray  # sorted


def encode(df: pd.DataFrame, binary: bool = True, user_ids: np.ndarray | None = None,
           item_ids: np.ndarray | None = None) -> Encoded:
    """Users × items matrix (1 per rated pair when ``binary``, else the rating)."""
    users = np.unique(df["userId"].to_numpy()) if user_ids is None else user_ids
    items = np.unique(df["movieId"].to_numpy()) if item_ids is None else item_ids
    rows = np.searchsorted(users, df["userId"].to_numpy())
    cols = np.searchsorted(items, df["movieId"].to_numpy())
    vals = np.ones(len(df), np.float32) if binary else df["rating"].to_numpy(np.float32)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(users.size, items.size), dtype=np.float32)
    return Encoded(m, users, items)


def stratified_split(df: pd.DataFrame, ratio: float = 0.75, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split (Recommenders' ``python_random_split`` stratified by user):
    each user's first ``round(ratio · n)`` shuffled rows train, the rest test."""
    rng = np.random.default_rng(seed)
    shuffled = df.iloc[rng.permutation(len(df))]
    rank = shuffled.groupby("userId").cumcount()
    size = shuffled.groupby("userId")["userId"].transform("size")
    in_train = rank < np.round(size * ratio)
    return shuffled[in_train].copy(), shuffled[~in_train].copy()


def fit_production(df: pd.DataFrame, model_cfg: dict[str, Any], num_threads: int = 0) -> tuple[Recommender, Encoded]:
    binary = bool(model_cfg.get("binary", True))
    enc = encode(df, binary=binary)
    cfg = {k: v for k, v in model_cfg.items() if k != "binary"}
    if cfg.get("name") == "ease":
        cfg["binary"] = binary
    model = make_model(cfg, num_threads=num_threads)
    return model.fit(enc.matrix), enc


def recommend_all(model: Recommender, enc: Encoded, k: int, batch: int = 2000) -> pd.DataFrame:
    """Top-k (userId, movieId, score) for every user, seen items excluded."""
    out_u, out_i, out_s = [], [], []
    for start in range(0, enc.user_ids.size, batch):
        users = np.arange(start, min(start + batch, enc.user_ids.size))
        scores = model.scores_for_users(users)
        seen = enc.matrix[users]
        coo = seen.tocoo()
        scores[coo.row, coo.col] = -np.inf
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        ps = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -ps), axis=1)
        top = np.take_along_axis(part, order, axis=1)
        top_s = np.take_along_axis(scores, top, axis=1)
        ok = np.isfinite(top_s)
        out_u.append(np.repeat(enc.user_ids[users], kk)[ok.ravel()])
        out_i.append(enc.item_ids[top.ravel()][ok.ravel()])
        out_s.append(top_s.ravel()[ok.ravel()])
    return pd.DataFrame({"userId": np.concatenate(out_u), "movieId": np.concatenate(out_i),
                         "score": np.concatenate(out_s).astype(np.float64)})


def protocol_metrics(train: pd.DataFrame, test: pd.DataFrame, recs: pd.DataFrame,
                     k: int = 10) -> dict[str, float]:
    """P@k / nDCG@k (and recall, MAP) over users present in both train and test; every test
    item relevant (binary relevance)."""
    users = np.intersect1d(train["userId"].unique(), test["userId"].unique())
    rel = test[test["userId"].isin(users)].groupby("userId")["movieId"].apply(list)
    rec = recs[recs["userId"].isin(users)].groupby("userId")["movieId"].apply(list)
    arr = np.full((users.size, k), -1, dtype=np.int64)
    relevant = []
    for n, u in enumerate(users):
        items = rec.get(u, [])[:k]
        arr[n, : len(items)] = items
        relevant.append(rel[u])
    # item ids are MovieLens ints, so they can serve as "indices" for the metric code
    res = summarise(arr, relevant, [k], n_items=max(1, train["movieId"].nunique()))
    return {key: v for key, v in res.items() if not (isinstance(v, float) and math.isnan(v))}


def run_protocol(df: pd.DataFrame, model_cfg: dict[str, Any], k: int = 10, seed: int = 42,
                 num_threads: int = 0) -> dict[str, float]:
    train, test = stratified_split(df, 0.75, seed)
    model, enc = fit_production(train, model_cfg, num_threads)
    recs = recommend_all(model, enc, k)
    return protocol_metrics(train, test, recs, k)
