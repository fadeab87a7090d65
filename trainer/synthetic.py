"""A small synthetic lake (watch sessions, ratings, users, movies) with taste structure, for
tests, the quick benchmark and local demos without the simulator."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from movierec_core import lake

OCCUPATIONS = ("scientist", "writer", "student", "engineer", "artist")


def synthetic_tables(n_users: int = 300, n_movies: int = 120, days: int = 40, seed: int = 0,
                     sessions_per_user: float = 15.0, late_user_fraction: float = 0.15,
                     start: datetime = datetime(2025, 3, 1),
                     drift_day: float | None = None) -> dict[str, pd.DataFrame]:
    """Users like one of 6 genres (user % 6); movie m is of genre m % 6, with Zipf popularity.
    The last ``late_user_fraction`` of users sign up in the final 20 % of the period.
    ``drift_day``: from that day on every user likes the opposite genre ((user + 3) % 6): a
    taste shift, as the soak injects."""
    rng = np.random.default_rng(seed)
    n_genres = 6
    movie_ids = np.array([f"movie+{m}+{1990 + m % 30}" for m in range(n_movies)])
    runtime = rng.integers(80, 150, n_movies)
    cost = np.round(rng.uniform(0.5, 5.0, n_movies), 2)
    weight = 1.0 / (1 + np.arange(n_movies)) ** 0.8
    users = np.arange(1, n_users + 1, dtype=np.int64)
    ages = rng.integers(15, 70, n_users)
    genders = rng.choice(["M", "F"], n_users)
    occ = rng.choice(OCCUPATIONS, n_users)
    late = users > n_users * (1 - late_user_fraction)
    rows_s, rows_r = [], []
    for u, is_late in zip(users, late, strict=True):
        g = int(u) % n_genres
        first_day = rng.uniform(days * 0.8, days - 1) if is_late else rng.uniform(0, days * 0.5)
        n = max(2, rng.poisson(sessions_per_user * (0.5 if is_late else 1.0)))
        own = np.flatnonzero(np.arange(n_movies) % n_genres == g)
        p_own = weight[own] / weight[own].sum()
        p_all = weight / weight.sum()
        shifted = np.flatnonzero(np.arange(n_movies) % n_genres == (g + 3) % n_genres)
        p_shifted = weight[shifted] / weight[shifted].sum()
        for _ in range(n):
            if drift_day is None:
                m = int(rng.choice(own, p=p_own) if rng.random() < 0.8
                        else rng.choice(n_movies, p=p_all))
                t = start + timedelta(days=float(rng.uniform(first_day, days)))
            else:  # the time first: it decides which taste the choice follows
                day = float(rng.uniform(first_day, days))
                t = start + timedelta(days=day)
                liked_set, p_liked = (shifted, p_shifted) if day >= drift_day else (own, p_own)
                m = int(rng.choice(liked_set, p=p_liked) if rng.random() < 0.8
                        else rng.choice(n_movies, p=p_all))
            after = drift_day is not None and (t - start).total_seconds() / 86400 >= drift_day
            liked = m % n_genres == ((g + 3) % n_genres if after else g)
            frac = rng.beta(5, 1.5) if liked else rng.beta(1.5, 4)
            minutes = max(1, int(frac * runtime[m]))
            rows_s.append((int(u), movie_ids[m], t, t + timedelta(minutes=minutes), minutes, minutes - 1))
            if rng.random() < 0.3:
                stars = int(rng.integers(4, 6) if liked else rng.integers(1, 4))
                rows_r.append((int(u), movie_ids[m], t + timedelta(minutes=minutes + 1), stars))
    sessions = pd.DataFrame(rows_s, columns=["user_id", "movie_id", "start", "end",
                                             "minutes_watched", "max_minute"])
    ratings = pd.DataFrame(rows_r, columns=["user_id", "movie_id", "time", "stars"])
    fetched = start
    users_df = pd.DataFrame({"user_id": users, "age": ages, "gender": genders, "occupation": occ,
                             "fetched_at": fetched})
    movies_df = pd.DataFrame({"movie_id": movie_ids, "title": movie_ids, "year": 1990 + np.arange(n_movies) % 30,
                              "genres": [[f"g{m % n_genres}"] for m in range(n_movies)],
                              "runtime": runtime, "cost": cost, "popularity": weight * 100,
                              "vote_average": 7.0, "release_date": "1990-01-01", "fetched_at": fetched})
    return {lake.WATCH_SESSIONS: sessions, lake.RATINGS: ratings, lake.USERS: users_df,
            lake.MOVIES: movies_df}


def _arrow(df: pd.DataFrame, table: str) -> pa.Table:
    schema = lake.SCHEMAS[table]
    df = df.copy()
    for name in schema.names:
        if name not in df.columns:
            df[name] = None
    if "event_id" in schema.names:
        df["event_id"] = np.arange(len(df), dtype=np.int64)
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)


def write_lake(lake_root: Path | str, tables: dict[str, pd.DataFrame]) -> Path:
    """Write tables in the lake layout (dated tables partitioned by event date)."""
    root = Path(lake_root)
    time_col = {lake.WATCH_SESSIONS: "start", lake.RATINGS: "time", lake.WATCH_MINUTES: "time",
                lake.RECOMMENDATION_REQUESTS: "time"}
    for table, df in tables.items():
        if table in time_col:
            days = pd.to_datetime(df[time_col[table]]).dt.date
            for day, part in df.groupby(days, sort=True):
                d = lake.partition_dir(root, table, day)
                d.mkdir(parents=True, exist_ok=True)
                pq.write_table(_arrow(part, table), d / "part-0.parquet")
        else:
            d = lake.table_dir(root, table)
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(_arrow(df, table), d / "part-0.parquet")
    return root
