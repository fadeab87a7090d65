"""Feature tables of the detectors: exact values on tiny hand-made windows."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from drift.detectors import compare_tables, run_detectors
from drift.features import FeatureContext, extract, list_score, popularity_percentiles
from drift.window import Catalog, Window
from movierec_core.events import AccountCreation, Rating, RecommendationRequest, WatchMinute

T = datetime(2026, 1, 1, 12)


def _window() -> Window:
    events = [
        # user 1 started movie a in the window and watched 3 minutes
        *(WatchMinute(T + timedelta(minutes=m), 1, "a", m) for m in range(3)),
        # user 2 was already watching b (minute 40 onwards): not a watch started here
        *(WatchMinute(T + timedelta(minutes=m), 2, "b", 40 + m) for m in range(2)),
        # user 3 started b at minute 1 (1-based minutes)
        WatchMinute(T + timedelta(minutes=2), 3, "b", 1),
        Rating(T + timedelta(minutes=5), 1, "a", 4),
        AccountCreation(T, 3),
        RecommendationRequest(T - timedelta(seconds=30), 1, "rec", 200, ("x", "a"), "", 12),
        RecommendationRequest(T + timedelta(minutes=1), 3, "rec", 200, ("x", "y"), "", 12),
        RecommendationRequest(T + timedelta(minutes=1), 2, "rec", 0, (), "timeout", 600),
    ]
    return Window.from_events(events, T - timedelta(minutes=1), T + timedelta(hours=1))


def _catalog() -> Catalog:
    users = pd.DataFrame({"user_id": [1, 2, 3], "age": [30, 40, 20],
                          "gender": ["F", "M", "F"], "occupation": ["writer", None, "student"]})
    movies = pd.DataFrame({"movie_id": ["a", "b"], "genres": [["Comedy", "Drama"], []]})
    return Catalog(users, movies)


def _ctx(**kw) -> FeatureContext:
    return FeatureContext(_catalog(), {"a": 0.0, "x": 0.5}, max_per_user=0, **kw)


def test_watches_are_counted_only_when_started_in_the_window() -> None:
    frame = extract("watch_minutes", _window(), _ctx())
    assert frame["minutes_watched"].tolist() == [3.0, 1.0]
    genres = extract("genre_mix", _window(), _ctx())
    assert genres["primary_genre"].tolist() == ["Comedy", "unknown"]
    pop = extract("item_popularity", _window(), _ctx())
    assert pop["popularity_percentile"].tolist() == [0.0, 1.0]  # b never seen: 1.0


def test_demographics_of_active_users_and_signups() -> None:
    active = extract("demographics", _window(), _ctx())
    assert active.to_dict("list") == {"age": [30.0, 40.0, 20.0],
                                      "gender": ["F", "M", "F"],
                                      "occupation": ["writer", "unknown", "student"]}
    assert extract("signups", _window(), _ctx())["age"].tolist() == [20.0]


def test_recommendation_lists_score_length_and_uptake() -> None:
    frame = extract("recommendation_scores", _window(), _ctx())
    w = 1 / np.log2(np.arange(2) + 2)
    # user 1: x (0.5 -> 0.5) then a (0.0 -> 1.0); started a 30 s later: accepted
    assert frame["score"].tolist() == pytest.approx([(w[0] * 0.5 + w[1] * 1.0) / w.sum(),
                                                     (w[0] * 0.5 + w[1] * 0.0) / w.sum()])
    assert frame["list_length"].tolist() == [2.0, 2.0]
    assert frame["accepted"].tolist() == ["yes", "no"]  # the failed request is left out


def test_list_score_and_popularity_percentiles() -> None:
    assert list_score([], {}) != list_score([], {})  # nan: an empty list has no score
    assert list_score(["m"], {"m": 0.25}) == 0.75
    pct = popularity_percentiles(_window())
    assert pct == {"b": 0.0, "a": 0.5}  # b has two viewers, a one


def test_per_user_cap_keeps_one_unit_per_user() -> None:
    ctx = FeatureContext(_catalog(), {}, max_per_user=1, max_per_user_by_detector={"ratings": 0})
    window = _window()
    assert len(extract("watch_minutes", window, ctx)) == 2
    assert len(extract("ratings", window, ctx)) == 1


def test_identical_samples_do_not_drift_and_a_shift_does() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"age": rng.normal(40, 10, 400), "gender": rng.choice(["M", "F"], 400),
                        "occupation": ["x"] * 400})
    same = compare_tables("demographics", ref, ref.copy(), p_val=0.01)
    assert not same.is_drift and same.features["occupation"].p_value == 1.0
    older = ref.assign(age=ref["age"] + 10)
    shifted = compare_tables("demographics", ref, older, p_val=0.01)
    assert shifted.is_drift and shifted.features["age"].p_value < 1e-6
    few = compare_tables("demographics", ref.head(10), older, p_val=0.01, min_samples=30)
    assert not few.is_drift and few.skipped.startswith("too few samples")


def test_fdr_correction_is_accepted_and_unknown_is_refused() -> None:
    window = _window()
    run = run_detectors(window, window, _catalog(), ["ratings"], correction="fdr",
                        min_samples=1)
    assert not run.is_drift
    with pytest.raises(ValueError):
        run_detectors(window, window, _catalog(), ["ratings", "demographics"],
                      correction="holm", min_samples=1)
