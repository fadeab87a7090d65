"""The ranker's features: one definition for training (from the lake) and serving (from the
online store and the bundle's item table), so the two cannot drift apart (issue 22).

A ranked candidate's feature row has three parts:

* the **user** (:func:`user_features`), from their interactions as the online store hands them
  to the model server (:class:`movierec_core.online_store.UserInteraction`: movie, distinct
  minutes watched, latest stars, last time), newest first and at most ``HISTORY_LIMIT``; for
  training, :func:`interactions_as_of` builds exactly that list from the lake's watch minutes
  and ratings at a request's instant;
* the **item** (:class:`ItemTable`, written into the bundle): genres, release year, runtime,
  licence cost, popularity and its trend over the last week of the training data;
* the **pair and the request**: the first stage's factor score, its rank among the candidates
  and its gap to the best one, the match of the item's genres with the user's minutes by
  genre, the hour of the day.

Demographics are not features: the model server looks them up only for cold starts (a metadata
call per request would cost more than the ranking).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from movierec_core.online_store import UserInteraction

HISTORY_LIMIT = 500  # the model server reads at most this many interactions (newest first)
TREND_DAYS = 7.0
MAX_GENRES = 20
ITEM_FILE = "item_features.npz"
ITEM_META = "item_features.json"

USER_COLUMNS = ["u_items", "u_log_minutes", "u_mean_stars", "u_rated_share", "u_hours_since_last"]
ITEM_COLUMNS = ["i_log_popularity", "i_trend", "i_age_years", "i_runtime", "i_cost"]
PAIR_COLUMNS = ["score", "score_rank", "score_gap", "genre_match", "hour"]


def feature_names() -> list[str]:
    return [*PAIR_COLUMNS, *ITEM_COLUMNS, *USER_COLUMNS]


def year_of(movie_id: str) -> int:
    """The release year an id ends with (EVENTS.md: ``title+year``), 0 when it has none."""
    tail = movie_id.rsplit("+", 1)[-1]
    return int(tail) if tail.isdigit() and len(tail) == 4 else 0


@dataclass(frozen=True)
class ItemTable:
    """Per item (in the bundle's item order): the metadata and popularity features."""

    genres: np.ndarray  # n_items x G, each row sums to 1 (or 0: no known genre)
    genre_names: list[str]
    year: np.ndarray  # 0: unknown
    runtime: np.ndarray  # minutes, nan: unknown
    cost: np.ndarray  # 0..1 (the bundle's normalised cost)
    log_popularity: np.ndarray  # log1p(users who interacted)
    trend: np.ndarray  # share of those interactions in the last TREND_DAYS of the data

    @classmethod
    def build(cls, item_ids: Sequence[str], movies: pd.DataFrame | None, pairs: pd.DataFrame,
              costs: np.ndarray | None = None) -> ItemTable:
        """From the movies table (``movie_id``, ``genres``, ``runtime``; latest record per
        movie) and the training pairs (``movie_id``, ``last_time``)."""
        ids = [str(m) for m in item_ids]
        n = len(ids)
        genre_lists: list[list[str]] = [[] for _ in range(n)]
        runtime = np.full(n, np.nan, np.float32)
        if movies is not None and len(movies):
            m = movies.drop_duplicates("movie_id", keep="last").set_index("movie_id")
            m = m.reindex(ids)
            if "genres" in m:
                genre_lists = [list(g) if isinstance(g, list | tuple | np.ndarray) else []
                               for g in m["genres"]]
            if "runtime" in m:
                runtime = pd.to_numeric(m["runtime"], errors="coerce").to_numpy(np.float32)
        counts: dict[str, int] = {}
        for gs in genre_lists:
            for g in gs:
                counts[str(g)] = counts.get(str(g), 0) + 1
        names = [g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:MAX_GENRES]
        col = {g: j for j, g in enumerate(names)}
        genres = np.zeros((n, len(names)), np.float32)
        for i, gs in enumerate(genre_lists):
            js = [col[str(g)] for g in gs if str(g) in col]
            if js:
                genres[i, js] = 1.0 / len(js)
        pop = np.zeros(n, np.float32)
        trend = np.zeros(n, np.float32)
        if len(pairs):
            index = {m: i for i, m in enumerate(ids)}
            pos = pairs["movie_id"].astype(str).map(index)
            known = pos.notna().to_numpy()
            pos = pos[known].to_numpy(np.int64)
            last = pd.to_datetime(pairs["last_time"]).to_numpy()[known]
            total = np.bincount(pos, minlength=n).astype(np.float32)
            recent_from = last.max() - np.timedelta64(int(TREND_DAYS * 86400), "s")
            recent = np.bincount(pos[last >= recent_from], minlength=n).astype(np.float32)
            pop = np.log1p(total)
            trend = np.divide(recent, total, out=np.zeros(n, np.float32), where=total > 0)
        return cls(genres, names, np.array([year_of(m) for m in ids], np.int32), runtime,
                   np.asarray(costs if costs is not None else np.zeros(n), np.float32),
                   pop.astype(np.float32), trend.astype(np.float32))

    @functools.cached_property
    def item_columns(self) -> np.ndarray:
        """n_items x 5, float32, in ``ITEM_COLUMNS`` order with the release year in place of
        the age (which depends on the instant): what :func:`candidate_features` gathers."""
        return np.column_stack([self.log_popularity, self.trend, self.year, self.runtime,
                                self.cost]).astype(np.float32)

    def save(self, directory: Path | str) -> None:
        d = Path(directory)
        np.savez(d / ITEM_FILE, genres=self.genres, year=self.year, runtime=self.runtime,
                 cost=self.cost, log_popularity=self.log_popularity, trend=self.trend)
        (d / ITEM_META).write_text(json.dumps({"genre_names": self.genre_names}))

    @classmethod
    def load(cls, directory: Path | str) -> ItemTable:
        d = Path(directory)
        with np.load(d / ITEM_FILE) as z:
            arrays = {k: z[k] for k in z.files}
        names = json.loads((d / ITEM_META).read_text())["genre_names"]
        return cls(genre_names=names, **arrays)


@dataclass(frozen=True)
class UserFeatures:
    values: np.ndarray  # USER_COLUMNS
    genre_share: np.ndarray  # minutes by genre, sums to 1 (or 0 without history)


def user_features(interactions: Sequence[UserInteraction], item_index: dict[str, int],
                  items: ItemTable, now: datetime) -> UserFeatures:
    """The user's part, from the interactions the online store returns (newest first; only the
    first ``HISTORY_LIMIT`` count, like the store's read)."""
    history = list(interactions)[:HISTORY_LIMIT]
    g = items.genres.shape[1]
    if not history:
        return UserFeatures(np.array([0.0, 0.0, np.nan, 0.0, np.nan], np.float64),
                            np.zeros(g, np.float64))
    minutes = np.array([max(int(h.minutes), 0) for h in history], np.float64)
    stars = np.array([np.nan if h.stars is None else float(h.stars) for h in history])
    last = max(h.last_time for h in history)
    rated = np.isfinite(stars)
    idx = np.array([item_index.get(h.movie_id, -1) for h in history], np.int64)
    share = np.zeros(g, np.float64)
    known = idx >= 0
    if known.any() and g:
        share = minutes[known] @ items.genres[idx[known]].astype(np.float64)
        total = share.sum()
        share = share / total if total > 0 else share
    values = np.array([
        float(len(history)),
        float(np.log1p(minutes.sum())),
        float(stars[rated].mean()) if rated.any() else np.nan,
        float(rated.mean()),
        (now - last).total_seconds() / 3600.0,
    ], np.float64)
    return UserFeatures(values, share)


def candidate_features(user: UserFeatures, candidates: np.ndarray, scores: np.ndarray,
                       ranks: np.ndarray, best_score: float, items: ItemTable,
                       now: datetime) -> np.ndarray:
    """Rows (``feature_names()`` order) for ``candidates`` (item indices) with their first-stage
    ``scores`` and ``ranks`` (0: the first stage's best unseen item)."""
    c = np.asarray(candidates, np.int64)
    n = c.size
    out = np.empty((n, len(PAIR_COLUMNS) + len(ITEM_COLUMNS) + len(USER_COLUMNS)), np.float32)
    out[:, 0] = scores
    out[:, 1] = ranks
    out[:, 2] = np.asarray(scores, np.float64) - best_score
    # a user without minutes by genre matches nothing (no product to take)
    out[:, 3] = (items.genres[c] @ user.genre_share.astype(np.float32)
                 if items.genres.shape[1] and user.genre_share.any() else 0.0)
    out[:, 4] = now.hour + now.minute / 60.0
    # the item columns in one gather (the model server builds these rows per request)
    out[:, 5:10] = items.item_columns[c]
    age = out[:, 7]  # the release year, until turned into the age at ``now``
    age[:] = np.where(age > 0, now.year - age, np.nan)
    out[:, 10:] = user.values[None, :]
    return out


# ------------------------------------------------------------------------ the lake's side
class LakeHistory:
    """Every user's interactions as of any instant, from the lake's watch minutes and ratings
    (what the online store would have returned at that instant; retention aside)."""

    def __init__(self, watch_minutes: pd.DataFrame, ratings: pd.DataFrame) -> None:
        w = watch_minutes[["user_id", "movie_id", "time", "minute"]]
        r = ratings[["user_id", "movie_id", "time", "stars"]]
        frame = pd.concat([
            pd.DataFrame({"user_id": w["user_id"].to_numpy(np.int64),
                          "movie_id": w["movie_id"].astype(str).to_numpy(),
                          "time": pd.to_datetime(w["time"]).to_numpy("datetime64[us]"),
                          "minute": w["minute"].to_numpy(np.int64), "stars": np.nan}),
            pd.DataFrame({"user_id": r["user_id"].to_numpy(np.int64),
                          "movie_id": r["movie_id"].astype(str).to_numpy(),
                          "time": pd.to_datetime(r["time"]).to_numpy("datetime64[us]"),
                          "minute": -1, "stars": r["stars"].to_numpy(np.float64)}),
        ], ignore_index=True).sort_values(["user_id", "time"], kind="stable")
        self.users = frame["user_id"].to_numpy(np.int64)
        self.movies = frame["movie_id"].to_numpy()
        self.times = frame["time"].to_numpy("datetime64[us]")
        self.minutes = frame["minute"].to_numpy(np.int64)
        self.stars = frame["stars"].to_numpy(np.float64)
        ids, self.starts = np.unique(self.users, return_index=True)
        self._row = {int(u): i for i, u in enumerate(ids)}
        self.ends = np.append(self.starts[1:], self.users.size)

    def interactions_as_of(self, user_id: int, at: datetime | np.datetime64
                           ) -> list[UserInteraction]:
        """The user's interactions from events at or before ``at``, newest first (ties by
        movie id), at most ``HISTORY_LIMIT``: the online store's answer at that instant."""
        i = self._row.get(int(user_id))
        if i is None:
            return []
        lo, hi = int(self.starts[i]), int(self.ends[i])
        hi = lo + int(np.searchsorted(self.times[lo:hi], np.datetime64(at, "us"), side="right"))
        if hi == lo:
            return []
        per: dict[str, list[Any]] = {}
        for m, t, minute, stars in zip(self.movies[lo:hi].tolist(), self.times[lo:hi].tolist(),
                                       self.minutes[lo:hi].tolist(), self.stars[lo:hi].tolist(),
                                       strict=True):
            entry = per.get(m)
            if entry is None:
                entry = per[m] = [set(), -1, None, t]
            if minute >= 0:
                entry[0].add(minute)
                entry[1] = max(entry[1], minute)
            elif stars == stars:  # latest rating (events are in time order)
                entry[2] = int(stars)
            entry[3] = max(entry[3], t)
        out = [UserInteraction(m, len(e[0]), e[1], e[2], e[3]) for m, e in per.items()]
        out.sort(key=lambda x: x.movie_id)
        out.sort(key=lambda x: x.last_time, reverse=True)
        return out[:HISTORY_LIMIT]
