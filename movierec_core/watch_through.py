"""Watch-through of recommendations, computed from the telemetry alone (pure, vectorised).

A successful recommendation request (``status 200``) *watched through* when, within
``window_minutes`` after it (inclusive, by event time), the same user streamed at least
``min_minutes`` watch-minute lines of one of the movies it returned. Watch-through is the share
of successful requests watched through. Requests that failed (status 0 / 500) are not in the
denominator; count them separately as availability.

Inputs are DataFrames with the lake's column names (``movierec_core.lake.SCHEMAS``):
requests need ``time, user_id, status, movie_ids`` (plus whatever to group by, e.g.
``server``); watches need ``time, user_id, movie_id``. Deduplicate lines first (the lake is).
:func:`frames_from_events` builds both from parsed events. The simulator's closed-loop tests and
the experiments package both compute it here, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from movierec_core.events import RecommendationRequest, WatchMinute

DEFAULT_MIN_MINUTES = 15
DEFAULT_WINDOW_MINUTES = 120

__all__ = [
    "DEFAULT_MIN_MINUTES",
    "DEFAULT_WINDOW_MINUTES",
    "frames_from_events",
    "listed_outcomes",
    "request_outcomes",
    "watch_through",
]


def frames_from_events(events: Iterable[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(requests, watches) DataFrames with lake column names from parsed events (others skipped)."""
    requests: dict[str, list] = {"time": [], "user_id": [], "server": [], "status": [],
                                 "movie_ids": [], "response_ms": []}
    watches: dict[str, list] = {"time": [], "user_id": [], "movie_id": [], "minute": []}
    for e in events:
        if isinstance(e, WatchMinute):
            watches["time"].append(e.time)
            watches["user_id"].append(e.user_id)
            watches["movie_id"].append(e.movie_id)
            watches["minute"].append(e.minute)
        elif isinstance(e, RecommendationRequest):
            requests["time"].append(e.time)
            requests["user_id"].append(e.user_id)
            requests["server"].append(e.server)
            requests["status"].append(e.status)
            requests["movie_ids"].append(list(e.movie_ids))
            requests["response_ms"].append(e.response_ms)
    req = pd.DataFrame(requests)
    req["time"] = pd.to_datetime(req["time"])
    watch = pd.DataFrame(watches)
    watch["time"] = pd.to_datetime(watch["time"])
    return req, watch


def listed_outcomes(requests: pd.DataFrame, watches: pd.DataFrame,
                    window_minutes: float = DEFAULT_WINDOW_MINUTES) -> pd.DataFrame:
    """One row per movie listed by a successful request (status 200): ``request`` (its row
    among the successful requests, in order), ``position`` (0: first in the list),
    ``user_id``, ``time``, ``movie_id`` and ``minutes``, the watch-minute lines of that movie by
    that user within the window after the request (inclusive)."""
    req = requests[requests["status"] == 200].reset_index(drop=True)
    columns = ["request", "position", "user_id", "time", "movie_id", "minutes"]
    if req.empty:
        return pd.DataFrame(columns=columns)
    sizes = req["movie_ids"].map(len).to_numpy(np.int64)
    listed = pd.DataFrame({
        "request": np.repeat(np.arange(len(req)), sizes),
        "position": np.concatenate([np.arange(n) for n in sizes]) if sizes.sum() else
        np.empty(0, np.int64),
        "user_id": np.repeat(req["user_id"].to_numpy(np.int64), sizes),
        "time": np.repeat(pd.to_datetime(req["time"]).to_numpy("datetime64[ms]"), sizes),
        "movie_id": np.concatenate([np.asarray(m, dtype=object) for m in req["movie_ids"]])
        if sizes.sum() else np.empty(0, object),
    })
    listed = listed[listed["movie_id"].notna()].reset_index(drop=True)
    listed["minutes"] = 0
    if listed.empty or watches.empty:
        return listed[columns]
    n_listed = len(listed)
    users = np.concatenate([listed["user_id"].to_numpy(np.int64),
                            watches["user_id"].to_numpy(np.int64)])
    movies = pd.concat([listed["movie_id"], watches["movie_id"]], ignore_index=True)
    pair = pd.DataFrame({"u": users, "m": movies.to_numpy()}).groupby(
        ["u", "m"], sort=False).ngroup().to_numpy(np.int64)
    times = np.concatenate([listed["time"].to_numpy("datetime64[ms]"),
                            pd.to_datetime(watches["time"]).to_numpy("datetime64[ms]")])
    offset = (times - times.min()).astype(np.int64)  # ms since the earliest event
    window = int(window_minutes * 60_000)
    span_bits = int(offset.max() + window + 1).bit_length()
    if span_bits + int(pair.max() + 1).bit_length() > 62:  # keep keys within int64: use seconds
        offset, window = offset // 1000, window // 1000
        span_bits = int(offset.max() + window + 1).bit_length()
    key = (pair << span_bits) + offset
    watch_keys = np.sort(key[n_listed:])
    start = key[:n_listed]
    listed["minutes"] = (np.searchsorted(watch_keys, start + window, side="right")
                         - np.searchsorted(watch_keys, start, side="left"))
    return listed[columns]


def request_outcomes(requests: pd.DataFrame, watches: pd.DataFrame,
                     min_minutes: int = DEFAULT_MIN_MINUTES,
                     window_minutes: float = DEFAULT_WINDOW_MINUTES) -> pd.DataFrame:
    """The successful requests (status 200), each with ``watched_through`` (bool) and
    ``best_minutes`` (most minutes of one listed movie watched within the window)."""
    req = requests[requests["status"] == 200].reset_index(drop=True)
    out = req.copy()
    out["best_minutes"] = 0
    out["watched_through"] = False
    if req.empty or watches.empty:
        return out
    listed = listed_outcomes(req, watches, window_minutes)
    best = np.zeros(len(req), np.int64)
    np.maximum.at(best, listed["request"].to_numpy(np.int64), listed["minutes"].to_numpy(np.int64))
    out["best_minutes"] = best
    out["watched_through"] = best >= min_minutes
    return out


def watch_through(requests: pd.DataFrame, watches: pd.DataFrame,
                  min_minutes: int = DEFAULT_MIN_MINUTES,
                  window_minutes: float = DEFAULT_WINDOW_MINUTES,
                  by: str | list[str] | None = None) -> float | pd.DataFrame:
    """Share of successful requests watched through; with ``by`` (e.g. ``"server"``), a
    DataFrame indexed by it with ``requests``, ``watched_through`` and ``watch_through``."""
    outcomes = request_outcomes(requests, watches, min_minutes, window_minutes)
    if by is None:
        return float(outcomes["watched_through"].mean()) if len(outcomes) else float("nan")
    grouped = outcomes.groupby(by)["watched_through"].agg(["size", "sum"])
    grouped.columns = ["requests", "watched_through"]
    grouped["watch_through"] = grouped["watched_through"] / grouped["requests"]
    return grouped
