"""The ranker's features: the same values from the lake and from the online store at the same
instant (no training/serving skew), and exact values on hand-made inputs."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec_core.batch import parse_lines
from movierec_core.events import Rating
from movierec_core.features import (
    HISTORY_LIMIT,
    ItemTable,
    LakeHistory,
    candidate_features,
    feature_names,
    user_features,
    year_of,
)
from movierec_core.online_store import SqliteOnlineStore, UserInteraction
from simulator.runner import Simulator
from simulator.sinks import MemorySink

T = datetime(2025, 3, 2, 12, 0)


def _frames(lines: list[bytes]) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    batch = parse_lines(lines)
    ratings = [e for _, e in batch.others if isinstance(e, Rating)]
    r = pd.DataFrame([(e.user_id, e.movie_id, e.time, e.stars) for e in ratings],
                     columns=["user_id", "movie_id", "time", "stars"])
    return batch.watch.to_pandas(), r, ratings


@pytest.fixture(scope="module")
def stream() -> tuple[list[bytes], Simulator]:
    sim = Simulator.from_overrides(["world.n_users=300", "world.n_movies=400", "seed=5",
                                    "faults.duplicate_rate=0.05"])
    sim.use("popularity")
    sink = MemorySink()
    sim.run(240, sink=sink, speed=0)
    return sink.lines, sim


def test_features_from_the_lake_equal_those_from_the_online_store_at_the_same_instant(
        stream: tuple[list[bytes], Simulator], tmp_path: Path) -> None:
    lines, sim = stream
    watches, ratings, rating_events = _frames(lines)
    times = pd.to_datetime(watches["time"])
    # an instant some events happened at: those count (the store has applied them)
    instant = times.sort_values().iloc[int(len(times) * 0.6)].to_pydatetime()
    # the store at the instant: every line up to it (duplicates included), in two batches
    store = SqliteOnlineStore(tmp_path / "online.sqlite")
    early = watches[times <= instant]
    half = len(early) // 2
    import pyarrow as pa
    store.apply_tables(pa.Table.from_pandas(early.iloc[:half], preserve_index=False),
                       [e for e in rating_events if e.time <= instant])
    store.apply_tables(pa.Table.from_pandas(early.iloc[half:], preserve_index=False), [])
    lake = LakeHistory(watches, ratings)  # the whole lake: later events must not leak in
    movies = pd.DataFrame({"movie_id": list(sim.world.movie_ids),
                           "genres": [list(g) for g in sim.world.movie_genres]})
    items = ItemTable.build(sim.world.movie_ids, movies, pd.DataFrame(
        {"movie_id": watches["movie_id"], "last_time": watches["time"]}))
    index = {m: i for i, m in enumerate(sim.world.movie_ids)}
    users = sorted(set(early["user_id"].tolist()) | {e.user_id for e in rating_events})
    compared = 0
    for user in users:
        served = store.interactions(user, limit=HISTORY_LIMIT)
        trained = lake.interactions_as_of(user, instant)
        assert trained == served, user
        a = user_features(served, index, items, instant)
        b = user_features(trained, index, items, instant)
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.genre_share, b.genre_share)
        compared += bool(served)
    later = set(watches.loc[times > instant, "user_id"]) - set(early["user_id"])
    assert compared > 100 and later  # users only active later have no history at the instant
    assert all(lake.interactions_as_of(u, instant) == [] for u in later
               if u not in {e.user_id for e in rating_events if e.time <= instant})
    store.close()


def test_user_features_exact_values() -> None:
    items = ItemTable(genres=np.array([[1, 0], [0.5, 0.5], [0, 0]], np.float32),
                      genre_names=["Comedy", "Drama"], year=np.array([2000, 0, 2020]),
                      runtime=np.array([90, 100, np.nan], np.float32),
                      cost=np.array([0, 0.5, 1], np.float32),
                      log_popularity=np.log1p(np.array([9, 3, 0], np.float32)),
                      trend=np.array([0.5, 0, 0], np.float32))
    index = {"a+2000": 0, "b+": 1, "c+2020": 2}
    history = [UserInteraction("b+", 40, 39, 4, T - timedelta(hours=2)),
               UserInteraction("a+2000", 60, 59, None, T - timedelta(hours=5)),
               UserInteraction("zz+1999", 10, 9, 2, T - timedelta(hours=9))]  # unknown movie
    u = user_features(history, index, items, T)
    np.testing.assert_allclose(u.values, [3, np.log1p(110), 3.0, 2 / 3, 2.0])
    np.testing.assert_allclose(u.genre_share, [80 / 100, 20 / 100])
    rows = candidate_features(u, np.array([2, 0]), np.array([1.5, 2.5]), np.array([1, 0]), 2.5,
                              items, T)
    assert rows.shape == (2, len(feature_names()))
    named = dict(zip(feature_names(), rows.T, strict=True))
    np.testing.assert_allclose(named["score_gap"], [-1.0, 0.0])
    np.testing.assert_allclose(named["genre_match"], [0.0, 0.8])
    np.testing.assert_allclose(named["hour"], [12.0, 12.0])
    np.testing.assert_allclose(named["i_age_years"], [5, 25])
    assert np.isnan(named["i_runtime"][0]) and named["i_cost"][0] == 1.0
    np.testing.assert_allclose(named["u_hours_since_last"], [2.0, 2.0])
    empty = user_features([], index, items, T)
    assert empty.values[0] == 0 and np.isnan(empty.values[2]) and not empty.genre_share.any()
    rows = candidate_features(empty, np.array([1, 0]), np.array([2.5, 1.0]), np.array([0, 1]),
                              2.5, items, T)
    named = dict(zip(feature_names(), rows.T, strict=True))
    np.testing.assert_array_equal(named["genre_match"], [0.0, 0.0])  # no minutes by genre
    assert np.isnan(named["i_age_years"][0]) and named["i_age_years"][1] == 25  # year 0: unknown
    np.testing.assert_allclose(named["i_log_popularity"], np.log1p([3, 9]), rtol=1e-6)
    np.testing.assert_array_equal(named["i_trend"], [0, 0.5])
    np.testing.assert_array_equal(named["i_runtime"], [100, 90])
    assert rows.dtype == np.float32 and np.isnan(named["u_mean_stars"]).all()


def test_item_table_genres_popularity_trend_and_round_trip(tmp_path: Path) -> None:
    movies = pd.DataFrame({"movie_id": ["a+2000", "b+1990", "c+"],
                           "genres": [["Comedy", "Drama"], ["Drama"], []],
                           "runtime": [90, 120, None]})
    now = pd.Timestamp("2025-03-20")
    pairs = pd.DataFrame({"movie_id": ["a+2000", "a+2000", "b+1990", "x+1999"],
                          "last_time": [now, now - pd.Timedelta(days=10), now, now]})
    t = ItemTable.build(["a+2000", "b+1990", "c+"], movies, pairs, np.array([0.1, 0.2, 0.3]))
    assert t.genre_names == ["Drama", "Comedy"]  # by count, then name
    np.testing.assert_allclose(t.genres, [[0.5, 0.5], [1, 0], [0, 0]])
    np.testing.assert_allclose(t.log_popularity, np.log1p([2, 1, 0]))
    np.testing.assert_allclose(t.trend, [0.5, 1.0, 0.0])
    assert t.year.tolist() == [2000, 1990, 0] and year_of("c+") == 0
    t.save(tmp_path)
    back = ItemTable.load(tmp_path)
    assert back.genre_names == t.genre_names
    np.testing.assert_array_equal(back.genres, t.genres)
    np.testing.assert_array_equal(back.trend, t.trend)
