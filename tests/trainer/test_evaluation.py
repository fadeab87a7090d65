"""Metric known answers, and leakage: a leak built on purpose, shown to be stopped by the split."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from movierec_core.models import ConfidenceWeights, PopularityModel
from trainer.data import InteractionMatrix, aggregate_pairs
from trainer.evaluation import per_user_metrics, split_time_at_quantile, summarise, temporal_split
from trainer.pipeline import Evaluator

T0 = datetime(2025, 3, 1)


def test_metrics_known_answers():
    recs = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    per = per_user_metrics(recs, [{2, 4, 9}, {7}], k=4)
    assert per["precision"].tolist() == [0.5, 0.0]
    assert per["recall"][0] == pytest.approx(2 / 3)
    ideal = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert per["ndcg"][0] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / ideal)
    assert per["map"][0] == pytest.approx((1 / 2 + 2 / 4) / 3)
    s = summarise(recs, [{2, 4, 9}, {7}], [2, 4], n_items=10)
    assert s["users"] == 2 and s["precision@2"] == 0.25 and s["coverage@4"] == 0.6


def _event(u, m, day, minutes=90.0):
    return {"user_id": u, "movie_id": m, "time": T0 + timedelta(days=day), "minutes": minutes,
            "stars": np.nan}


def leaky_world() -> tuple[pd.DataFrame, pd.Timestamp]:
    """Days 0-9: 20 users watch old movies a..e. Day 10 (= T): a blockbuster 'z' is released and
    every user watches it. A model that has seen day-10 events 'knows' z is the answer."""
    ev = [_event(u, "abcde"[(u + j) % 5], j) for u in range(20) for j in range(3)]
    ev += [_event(u, "z", 10 + u / 100) for u in range(20)]
    ev += [_event(0, "a", 11)]  # user 0 re-watches an item seen before T: not a test item
    ev += [_event(99, "z", 12)]  # a user first seen after T: new, not warm
    return pd.DataFrame(ev), pd.Timestamp(T0 + timedelta(days=10))


def test_a_leak_built_on_purpose_is_stopped_by_the_temporal_split():
    events, t = leaky_world()
    w = ConfidenceWeights()
    movies = pd.DataFrame({"runtime": pd.Series(dtype=float), "cost": pd.Series(dtype=float)})

    # the leak: features (popularity) computed over *all* events make 'z' look like the answer
    leaky = InteractionMatrix.from_pairs(aggregate_pairs(events, movies, w))
    pop = PopularityModel().fit(leaky.matrix)
    assert leaky.item_ids[pop.recommend(1, k=1, exclude_seen=False)[0][0]] == "z"

    # the split: train strictly before T; z does not exist for the model
    split = temporal_split(events, t)
    assert split.train["time"].max() < t <= split.test["time"].min()
    train = InteractionMatrix.from_pairs(aggregate_pairs(split.train, movies, w))
    assert "z" not in set(train.item_ids)
    model = PopularityModel().fit(train.matrix)
    test_pairs = aggregate_pairs(split.test, movies, w)
    seen = aggregate_pairs(split.train, movies, w).set_index(["user_id", "movie_id"]).index
    test_pairs = test_pairs[~test_pairs.set_index(["user_id", "movie_id"]).index.isin(seen)]
    ev = Evaluator(train, test_pairs, pd.DataFrame(), [1, 5], light_max=2, max_users=1000, seed=0)
    # warm users only (users seen before T); user 99 counted as new
    assert ev.rows.size == 20 and ev.new_users == 1
    # the re-watch of 'a' by user 0 after T is not relevant: only 'z' is (seen items excluded)
    assert all(len(r) == 1 for r in ev.relevant)
    overall, _ = ev.evaluate(model)
    assert overall["precision@1"] == 0.0  # cannot know the future blockbuster

    # the same evaluation with the leaky model scores perfectly: that's the leak the split stops
    leaky_model = PopularityModel().fit(leaky.matrix[: train.matrix.shape[0], :])
    leaky_rows = leaky.rows_of(train.user_ids)
    recs = leaky_model.recommend_batch(leaky_rows, 1, exclude_seen=False)
    z = int(np.flatnonzero(leaky.item_ids == "z")[0])
    assert (recs[:, 0] == z).all()


def test_split_time_quantile_and_validation_is_inside_training():
    times = pd.Series(pd.date_range("2025-01-01", periods=100, freq="h"))
    t = split_time_at_quantile(times, 0.2)
    assert (times >= t).sum() == 20
    train = times[times < t]
    tv = split_time_at_quantile(train, 0.15)
    assert tv < t
    with pytest.raises(ValueError):
        split_time_at_quantile(times, 1.5)


def test_unknown_relevant_items_count_but_never_hit():
    per = per_user_metrics(np.array([[3, 1]]), [[1, -1, -1]], k=2)
    assert per["recall"][0] == pytest.approx(1 / 3)
    assert per["precision"][0] == 0.5
    assert per["map"][0] == pytest.approx((1 / 2) / 2)
