"""Per-detector feature tables: one row per independent unit, pure functions of a window.

Statistical tests assume independent samples, and telemetry is anything but: one session is
dozens of watch-minute lines, one user watches many movies of the genres they like. So each
detector first chooses its *unit* (an active user, a watched (user, movie) pair, a rating, a
recommendation list) and, for pair-level units, keeps at most ``max_per_user`` per user
(seeded). Without that, a stationary stream raises false alarms at several times the nominal
rate.

Popularity-based features use a popularity computed on a *separate* slice (the first half of
the reference window), never on the sample they describe: in-sample popularity would make
reference movies look more popular than current ones even with no drift at all.

Recommendation score: the recommendation lines carry only the ordered ids (no model scores),
so the score of a list is the position-weighted (DCG weights ``1/log2(position + 2)``) mean of
each item's popularity score ``1 - percentile`` (1 = most popular, 0 = never watched in the
popularity slice). It moves when the model starts recommending a different part of the
catalogue (staler or more niche lists), which is what a recommendation-score drift means here.
Each list also carries whether it was *accepted* (a listed movie started within
``ACCEPT_WITHIN``): a model that has gone stale after a shift of tastes shows up there first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from drift.window import Catalog, Window

UNKNOWN = "unknown"
ACCEPT_WITHIN = pd.Timedelta(minutes=5)  # a listed movie started this soon: list accepted
STARTED_MINUTE = 1  # minutes are 0- or 1-based (EVENTS.md): a watch seen from <= 1 started here

# detector -> [(feature, categorical)]
FEATURES: dict[str, list[tuple[str, bool]]] = {
    "demographics": [("age", False), ("gender", True), ("occupation", True)],
    "signups": [("age", False), ("gender", True), ("occupation", True)],
    "genre_mix": [("primary_genre", True)],
    "watch_minutes": [("minutes_watched", False)],
    "ratings": [("stars", True)],
    "item_popularity": [("popularity_percentile", False)],
    "recommendation_scores": [("score", False), ("list_length", False), ("accepted", True)],
    # online (KServe payloads): requested users, and the lists the model server returned
    "online_requests": [("age", False), ("gender", True), ("occupation", True),
                        ("known_user", True)],
    "online_responses": [("score", False), ("list_length", False)],
}


@dataclass
class FeatureContext:
    """What features are computed against: enrichment and a popularity ranking."""

    catalog: Catalog
    popularity: dict[str, float]  # movie_id -> percentile in [0, 1), 0 = most watched
    max_per_user: int = 1
    seed: int = 0
    max_per_user_by_detector: dict[str, int] = field(default_factory=dict)


def popularity_percentiles(window: Window) -> dict[str, float]:
    """Movie -> percentile of its distinct-viewer count in ``window`` (0 = most popular)."""
    pairs = window.watch_minutes[["user_id", "movie_id"]].drop_duplicates()
    if not len(pairs):
        return {}
    counts = pairs.groupby("movie_id").size().sort_values(ascending=False, kind="stable")
    ranks = counts.rank(method="average", ascending=False) - 1
    return (ranks / len(counts)).to_dict()


def _limit_per_user(frame: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    if k <= 0 or not len(frame):
        return frame
    shuffled = frame.sample(frac=1.0, random_state=seed)
    return shuffled.groupby("user_id", sort=False).head(k).reset_index(drop=True)


def _demographics(user_ids: pd.Series, catalog: Catalog) -> pd.DataFrame:
    users = pd.DataFrame({"user_id": pd.unique(user_ids)})
    joined = users.merge(catalog.users, on="user_id", how="inner")
    return pd.DataFrame({
        "user_id": joined["user_id"],
        "age": pd.to_numeric(joined["age"], errors="coerce").astype(float),
        "gender": joined["gender"].fillna(UNKNOWN).astype(str),
        "occupation": joined["occupation"].fillna(UNKNOWN).astype(str),
    }).dropna(subset=["age"])


def _active_users(window: Window) -> pd.Series:
    return pd.concat([
        window.watch_minutes["user_id"], window.ratings["user_id"],
        window.recommendation_requests["user_id"],
    ], ignore_index=True)


def _watch_pairs(window: Window) -> pd.DataFrame:
    """(user, movie) watches *started* in the window, with the distinct minutes watched in it.

    A watch that began before the window (its lowest minute in the window is past
    ``STARTED_MINUTE``) is left out: it reflects a choice made earlier, and would be counted in
    both of two adjacent windows, making them look alike and hiding a fresh change of taste.
    """
    wm = window.watch_minutes
    if not len(wm):
        return pd.DataFrame(columns=["user_id", "movie_id", "minutes_watched"])
    grouped = wm.groupby(["user_id", "movie_id"], sort=True)["minute"]
    pairs = pd.DataFrame({"minutes_watched": grouped.nunique(), "first": grouped.min()})
    pairs = pairs[pairs["first"] <= STARTED_MINUTE]
    return pairs[["minutes_watched"]].reset_index()


def _watch_starts(window: Window) -> pd.DataFrame:
    """(user, movie, start time) of the watches started in the window."""
    wm = window.watch_minutes
    if not len(wm):
        return pd.DataFrame(columns=["user_id", "movie_id", "start"])
    started = wm[wm["minute"] <= STARTED_MINUTE]
    starts = started.groupby(["user_id", "movie_id"], sort=False)["time"].min()
    return starts.rename("start").reset_index()


def _accepted(requests: pd.DataFrame, window: Window) -> pd.Series:
    """Whether each recommendation list was followed by a watch of one of its movies within
    ``ACCEPT_WITHIN``: the uptake of the lists, which falls when the model goes stale."""
    if not len(requests):
        return pd.Series([], dtype=object)
    listed = requests[["user_id", "time", "movie_ids"]].reset_index(names="request")
    listed = listed.explode("movie_ids").rename(columns={"movie_ids": "movie_id"})
    hits = listed.merge(_watch_starts(window), on=["user_id", "movie_id"], how="inner")
    delay = hits["start"] - hits["time"]
    hit_requests = set(hits.loc[(delay >= pd.Timedelta(0)) & (delay <= ACCEPT_WITHIN),
                                "request"])
    return pd.Series(["yes" if i in hit_requests else "no" for i in range(len(requests))],
                     index=requests.index)


def _primary_genres(catalog: Catalog) -> dict[str, str]:
    out = {}
    for movie_id, genres in zip(catalog.movies["movie_id"], catalog.movies["genres"], strict=True):
        genres = list(genres) if genres is not None else []
        out[movie_id] = str(genres[0]) if len(genres) else UNKNOWN
    return out


def list_score(movie_ids, popularity: dict[str, float]) -> float:
    ids = list(movie_ids) if movie_ids is not None else []
    if not ids:
        return float("nan")
    weights = 1.0 / np.log2(np.arange(len(ids)) + 2.0)
    scores = np.array([1.0 - popularity.get(m, 1.0) for m in ids])
    return float((weights * scores).sum() / weights.sum())


def extract(detector: str, window: Window, ctx: FeatureContext) -> pd.DataFrame:
    """The unit table of ``detector`` over ``window``: columns = ``FEATURES[detector]``."""
    names = [name for name, _ in FEATURES[detector]]
    k, seed = ctx.max_per_user_by_detector.get(detector, ctx.max_per_user), ctx.seed
    if detector == "demographics":
        frame = _demographics(_active_users(window), ctx.catalog)
    elif detector == "signups":
        frame = _demographics(window.account_creations["user_id"], ctx.catalog)
    elif detector in ("genre_mix", "watch_minutes", "item_popularity"):
        frame = _limit_per_user(_watch_pairs(window), k, seed)
        if detector == "genre_mix":
            genres = _primary_genres(ctx.catalog)
            frame = frame.assign(primary_genre=frame["movie_id"].map(genres))
            frame = frame.dropna(subset=["primary_genre"])
        elif detector == "watch_minutes":
            frame = frame.assign(minutes_watched=frame["minutes_watched"].astype(float))
        else:
            pop = frame["movie_id"].map(ctx.popularity).fillna(1.0).astype(float)
            frame = frame.assign(popularity_percentile=pop)
    elif detector == "ratings":
        frame = _limit_per_user(window.ratings, k, seed)
        frame = frame.assign(stars=frame["stars"].astype("Int64").astype(str))
    elif detector == "recommendation_scores":
        reqs = window.recommendation_requests
        reqs = reqs[pd.to_numeric(reqs["status"], errors="coerce") == 200].reset_index(drop=True)
        reqs = reqs.assign(accepted=_accepted(reqs, window))
        frame = _limit_per_user(reqs, k, seed)
        frame = frame.assign(
            score=[list_score(ids, ctx.popularity) for ids in frame["movie_ids"]],
            list_length=[float(len(ids)) if ids is not None else 0.0
                         for ids in frame["movie_ids"]],
        ).dropna(subset=["score"])
    else:
        raise ValueError(f"unknown detector {detector!r}")
    if not len(frame):
        return pd.DataFrame(columns=names)
    return frame[names].reset_index(drop=True)
