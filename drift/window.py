"""A window of telemetry (what happened between two instants) as pandas frames.

Built from the lake (:func:`load_window`) or from parsed events (:meth:`Window.from_events`,
used by the simulator drills and tests). Detectors only ever see :class:`Window` and
:class:`Catalog`, so they need no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds

from movierec_core import lake
from movierec_core.events import AccountCreation, Rating, RecommendationRequest, WatchMinute

_COLUMNS = {
    lake.WATCH_MINUTES: ["time", "user_id", "movie_id", "minute"],
    lake.RATINGS: ["time", "user_id", "movie_id", "stars"],
    lake.ACCOUNT_CREATIONS: ["time", "user_id"],
    lake.RECOMMENDATION_REQUESTS: ["time", "user_id", "status", "movie_ids"],
}


def _empty(table: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in _COLUMNS[table]})


@dataclass
class Window:
    """The events of one time window, one frame per event table."""

    start: datetime | None
    end: datetime | None
    watch_minutes: pd.DataFrame
    ratings: pd.DataFrame
    account_creations: pd.DataFrame
    recommendation_requests: pd.DataFrame

    @classmethod
    def from_events(
        cls, events: Iterable[object], start: datetime | None = None, end: datetime | None = None
    ) -> Window:
        """Group parsed events (``movierec_core.events``) into a window; others are ignored."""
        rows: dict[str, list[tuple]] = {t: [] for t in _COLUMNS}
        for e in events:
            if isinstance(e, WatchMinute):
                rows[lake.WATCH_MINUTES].append((e.time, e.user_id, e.movie_id, e.minute))
            elif isinstance(e, Rating):
                rows[lake.RATINGS].append((e.time, e.user_id, e.movie_id, e.stars))
            elif isinstance(e, AccountCreation):
                rows[lake.ACCOUNT_CREATIONS].append((e.time, e.user_id))
            elif isinstance(e, RecommendationRequest):
                rows[lake.RECOMMENDATION_REQUESTS].append(
                    (e.time, e.user_id, e.status, list(e.movie_ids))
                )
        frames = {
            t: pd.DataFrame(r, columns=_COLUMNS[t]) if r else _empty(t) for t, r in rows.items()
        }
        times = [f["time"] for f in frames.values() if len(f)]
        if start is None and times:
            start = min(t.min() for t in times)
        if end is None and times:
            end = max(t.max() for t in times)
        return cls(start, end, **frames)

    def slice(self, start: datetime, end: datetime) -> Window:
        """The events with ``start <= time < end``."""

        def cut(f: pd.DataFrame) -> pd.DataFrame:
            if not len(f):
                return f
            return f[(f["time"] >= start) & (f["time"] < end)].reset_index(drop=True)

        return Window(
            start, end, cut(self.watch_minutes), cut(self.ratings), cut(self.account_creations),
            cut(self.recommendation_requests),
        )

    def counts(self) -> dict[str, int]:
        return {
            lake.WATCH_MINUTES: len(self.watch_minutes),
            lake.RATINGS: len(self.ratings),
            lake.ACCOUNT_CREATIONS: len(self.account_creations),
            lake.RECOMMENDATION_REQUESTS: len(self.recommendation_requests),
        }


@dataclass
class Catalog:
    """Enrichment the detectors join with: users (demographics) and movies (genres)."""

    users: pd.DataFrame  # user_id, age, gender, occupation
    movies: pd.DataFrame  # movie_id, genres (list of str)

    @classmethod
    def empty(cls) -> Catalog:
        return cls(
            pd.DataFrame(columns=["user_id", "age", "gender", "occupation"]),
            pd.DataFrame(columns=["movie_id", "genres"]),
        )


def _read_table(
    root: Path, table: str, start: datetime | None, end: datetime | None
) -> pd.DataFrame:
    path = lake.table_dir(root, table)
    if not path.exists() or not any(path.rglob("*.parquet")):
        return _empty(table)
    dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
    flt = None
    if start is not None:
        flt = ds.field("time") >= pd.Timestamp(start)
    if end is not None:
        upper = ds.field("time") < pd.Timestamp(end)
        flt = upper if flt is None else flt & upper
    return dataset.to_table(columns=_COLUMNS[table], filter=flt).to_pandas()


def latest_event_time(root: Path | str) -> datetime | None:
    """The newest event time in the lake's watch-minutes table (None: empty lake); reads only
    the newest ``event_date`` partition."""
    path = lake.table_dir(root, lake.WATCH_MINUTES)
    partitions = sorted(p for p in path.glob("event_date=*") if any(p.glob("*.parquet")))
    if not partitions:
        return None
    dataset = ds.dataset(str(partitions[-1]), format="parquet")
    times = dataset.to_table(columns=["time"]).column("time")
    if len(times) == 0:
        return None
    return pd.Timestamp(pc.max(times).as_py()).to_pydatetime()


def load_window(root: Path | str, start: datetime, end: datetime) -> Window:
    """Read the four event tables of ``[start, end)`` from the lake."""
    root = Path(root)
    frames = {t: _read_table(root, t, start, end) for t in _COLUMNS}
    return Window(start, end, **frames)


def load_catalog(root: Path | str) -> Catalog:
    """The lake's enrichment tables (the newest row per id); empty frames when absent."""
    root = Path(root)
    catalog = Catalog.empty()
    users_dir, movies_dir = lake.table_dir(root, lake.USERS), lake.table_dir(root, lake.MOVIES)
    users, movies = catalog.users, catalog.movies
    if users_dir.exists() and any(users_dir.rglob("*.parquet")):
        users = ds.dataset(str(users_dir), format="parquet").to_table().to_pandas()
        if "fetched_at" in users:
            users = users.sort_values("fetched_at")
        users = users.drop_duplicates("user_id", keep="last")[list(catalog.users.columns)]
    if movies_dir.exists() and any(movies_dir.rglob("*.parquet")):
        movies = ds.dataset(str(movies_dir), format="parquet").to_table().to_pandas()
        if "fetched_at" in movies:
            movies = movies.sort_values("fetched_at")
        movies = movies.drop_duplicates("movie_id", keep="last")[list(catalog.movies.columns)]
    return Catalog(users.reset_index(drop=True), movies.reset_index(drop=True))
