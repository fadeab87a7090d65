"""The learned second stage: training rows from logged requests and what followed them, a
LambdaMART ranker that learns what the first stage cannot see, the engine serving with it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_server.engine import Engine
from movierec_core.features import ItemTable, LakeHistory
from movierec_core.models.ranker import RANKER_FILE, Ranker, exploring
from movierec_core.models.testing import tiny_bundle
from movierec_core.watch_through import listed_outcomes, request_outcomes
from trainer.ranker import RankerSettings, build_rows, ndcg_at, train_ranker

T0 = datetime(2025, 3, 2, 8, 0)
N_ITEMS = 40


def short(i: int) -> bool:
    """The movies users actually finish in this world: a quarter of them, short ones."""
    return i % 4 == 1


def test_listed_outcomes_minutes_per_listed_movie_within_the_window() -> None:
    t = pd.Timestamp(T0)
    requests = pd.DataFrame({"time": [t, t, t + pd.Timedelta(minutes=5)], "user_id": [1, 2, 1],
                             "status": [200, 500, 200],
                             "movie_ids": [["a+", "b+"], ["a+"], ["b+", "c+"]]})
    watches = pd.DataFrame({
        "time": [t + pd.Timedelta(minutes=m) for m in (1, 2, 3, 124, 6)],
        "user_id": [1, 1, 1, 1, 2], "movie_id": ["b+", "b+", "b+", "b+", "a+"]})
    listed = listed_outcomes(requests, watches, window_minutes=120)
    assert listed[["request", "position", "user_id", "movie_id", "minutes"]].values.tolist() == [
        [0, 0, 1, "a+", 0], [0, 1, 1, "b+", 3], [1, 0, 1, "b+", 1], [1, 1, 1, "c+", 0]]
    out = request_outcomes(requests, watches, min_minutes=3, window_minutes=120)
    assert out["best_minutes"].tolist() == [3, 1]
    assert out["watched_through"].tolist() == [True, False]


def test_exploration_cohort_is_a_stable_share_of_users() -> None:
    ids = np.arange(1, 200_001, dtype=np.int64) * 7919
    cohort = exploring(ids, 0.1, 20260)
    assert abs(cohort.mean() - 0.1) < 0.005
    assert (exploring(ids, 0.1, 20260) == cohort).all()
    assert (exploring(ids, 0.1, 1) != cohort).any()  # the salt re-draws the cohort
    assert not exploring(ids, 0.0, 20260).any()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Requests logged from the first stage's own lists; users watch through the first short
    movie of each list and nothing else: a preference no factor of the tiny model encodes."""
    bundle = tiny_bundle(tmp_path_factory.mktemp("ranker") / "b", n_items=N_ITEMS)
    first = Engine.load(bundle)
    movies = pd.DataFrame({"movie_id": first.item_ids,
                           "runtime": [45 if short(i) else 120 for i in range(N_ITEMS)],
                           "genres": [["Comedy"] if i % 2 else ["Drama"]
                                      for i in range(N_ITEMS)]})
    items = ItemTable.build(first.item_ids, movies, pd.DataFrame(
        columns=["movie_id", "last_time"]), first.costs)
    requests, watch_rows = [], []
    for r, user in enumerate(first.user_ids.tolist()):
        for n in range(3):
            at = T0 + timedelta(hours=3 * n, minutes=r)
            history = LakeHistory(pd.DataFrame(watch_rows or None, columns=[
                "user_id", "movie_id", "time", "minute"]), pd.DataFrame(
                columns=["user_id", "movie_id", "time", "stars"]))
            listed = first.rank(user, history.interactions_as_of(user, at), 20).items
            requests.append((at, user, 200, listed))
            pick = next((m for m in listed if short(first._item_index[m])), None)
            if pick is not None:
                watch_rows += [(user, pick, at + timedelta(minutes=1 + k), k) for k in range(20)]
    frame = pd.DataFrame(requests, columns=["time", "user_id", "status", "movie_ids"])
    watches = pd.DataFrame(watch_rows, columns=["user_id", "movie_id", "time", "minute"])
    history = LakeHistory(watches, pd.DataFrame(columns=["user_id", "movie_id", "time", "stars"]))
    return {"bundle": bundle, "first": first, "items": items, "requests": frame,
            "watches": watches, "history": history}


def test_training_rows_label_what_was_watched_through_with_features_as_of_the_request(
        world: dict) -> None:
    settings = RankerSettings(enabled=True, min_requests=20)
    data = build_rows(world["first"], world["requests"], world["watches"], world["history"],
                      world["items"], settings)
    assert data.groups.size == len(world["requests"])  # every request usable: known users
    assert data.skipped == {"cold_start": 0, "unknown_movies": 0, "seen_before": 0,
                            "beyond_candidates": 0, "no_rows": 0}
    assert int(data.labels.sum()) == len(world["watches"]) // 20  # one watched-through each
    runtime = data.rows[:, 8]
    assert set(runtime[data.labels == 1].tolist()) == {45.0}
    # the first request of each user: no history yet; the third: two watched movies
    first_rows = np.concatenate([[0], np.cumsum(data.groups)[:-1]])
    u_items = data.rows[first_rows, 10]
    assert u_items[0::3].tolist() == [0.0] * 60 and set(u_items[2::3].tolist()) == {2.0}
    # positions as shown, ranks of the first stage: the lists were its own order
    assert (data.positions[: data.groups[0]] == np.arange(data.groups[0])).all()
    assert (data.first_rank[: data.groups[0]] == np.arange(data.groups[0])).all()


def test_ranker_learns_what_the_first_stage_misses_and_the_engine_serves_it(
        world: dict, tmp_path: Path) -> None:
    settings = RankerSettings(enabled=True, min_requests=20, min_data_in_leaf=5,
                              candidates=30, early_stopping_rounds=20)
    ranker, report = train_ranker(world["first"], world["requests"], world["watches"],
                                  world["history"], world["items"], settings)
    assert report["kept"] and ranker is not None
    ndcg = report["validation_ndcg@20"]
    # below 1: which of a list's short movies was watched is a coin flip (the first one was)
    assert ndcg["ranker"] > 0.8 and ndcg["first_stage"] < 0.4
    assert ndcg["as_shown"] == ndcg["first_stage"]  # the lists were the first stage's order
    top5 = report["validation_watched_in_top5"]
    assert top5["ranker"] == 1.0 > top5["first_stage"]  # short movies first: always one there
    assert next(iter(report["feature_gain"])) == "i_runtime"
    bundle = tmp_path / "with-ranker"
    import shutil
    shutil.copytree(world["bundle"], bundle)
    ranker.save(bundle)
    assert (bundle / RANKER_FILE).is_file()
    engine = Engine.load(bundle)
    plain = Engine.load(bundle, ranker=False)
    for user in world["first"].user_ids[:10].tolist():
        top = engine.rank(user, [], 5, now=T0).items
        assert all(short(engine._item_index[m]) for m in top[:3]), top
        assert not all(short(plain._item_index[m]) for m in plain.rank(user, [], 5).items[:3])
        # the ranker orders the first stage's candidates: nothing else is recommended
        vector, _, _, seen, _ = engine.user_state(user, [])
        cands = engine.first_stage(vector, seen, n=30)[0]
        assert set(engine.rank(user, [], 20, now=T0).items) <= {engine.item_ids[i] for i in cands}


def test_ranker_is_not_kept_without_enough_requests_or_when_it_loses(world: dict) -> None:
    few = train_ranker(world["first"], world["requests"].head(10), world["watches"],
                       world["history"], world["items"], RankerSettings(min_requests=20))
    assert few[0] is None and not few[1]["kept"] and "at least 20" in few[1]["reason"]
    # every user watched the first stage's favourite (the lists' first movie, under the
    # history the features see): its order is perfect, a ranker can only tie
    r = world["requests"]
    first = world["first"]
    rows = [(t, u, m[0], k) for t, u, m in zip(r["time"], r["user_id"], r["movie_ids"],
                                                strict=True) for k in range(20)]
    echo = pd.DataFrame([(u, m, t + timedelta(minutes=1 + k), k) for t, u, m, k in rows],
                        columns=["user_id", "movie_id", "time", "minute"])
    lost = train_ranker(first, r, echo, world["history"], world["items"],
                        RankerSettings(min_requests=20, min_data_in_leaf=5))
    assert lost[1]["validation_ndcg@20"]["first_stage"] == 1.0
    assert lost[0] is None and lost[1]["reason"].startswith("the ranker did not beat")


def test_ndcg_at_counts_only_groups_with_a_positive() -> None:
    scores = np.array([3.0, 2.0, 1.0, 5.0, 4.0])
    labels = np.array([0, 1, 0, 0, 0])
    assert ndcg_at(scores, labels, np.array([3, 2]), 20) == pytest.approx(1 / np.log2(3))


def test_ranker_refuses_a_bundle_of_other_features(world: dict, tmp_path: Path) -> None:
    settings = RankerSettings(enabled=True, min_requests=20, min_data_in_leaf=5)
    ranker, _ = train_ranker(world["first"], world["requests"], world["watches"],
                             world["history"], world["items"], settings)
    ranker.meta["features"] = ["score"]
    ranker.save(tmp_path)
    with pytest.raises(ValueError, match="retrain it"):
        Ranker.load(tmp_path)


def test_hit_at_is_the_share_of_lists_with_a_positive_in_their_top_k() -> None:
    from trainer.ranker import hit_at

    scores = np.array([3.0, 2.0, 1.0, 5.0, 4.0, 1.0, 1.0])
    labels = np.array([0, 0, 1, 0, 1, 0, 0])
    assert hit_at(scores, labels, np.array([3, 2, 2]), 2) == 0.5  # third group: no positive
    assert hit_at(scores, labels, np.array([3, 2, 2]), 3) == 1.0


def test_with_an_ann_index_the_ranker_orders_the_retrieved_candidates(world: dict,
                                                                     tmp_path: Path) -> None:
    import shutil

    from movierec_core.models.retrieval import RetrievalConfig, build_for_bundle

    settings = RankerSettings(enabled=True, min_requests=20, min_data_in_leaf=5, candidates=12)
    ranker, _ = train_ranker(world["first"], world["requests"], world["watches"],
                             world["history"], world["items"], settings)
    bundle = tmp_path / "b"
    shutil.copytree(world["bundle"], bundle)
    ranker.save(bundle)
    first = world["first"]
    build_for_bundle(first.model.item_factors, first.model.user_factors,
                     RetrievalConfig(candidates=12)).save(bundle)
    engine = Engine.load(bundle, retrieval="ann")
    assert engine.retrieval is not None and engine.ranker is not None
    for user in first.user_ids[:10].tolist():
        vector, _, _, seen, _ = engine.user_state(user, [])
        retrieved = set(engine.retrieval.search(vector, 12 + len(seen)).tolist()) - set(
            seen.tolist())
        top = [engine._item_index[m] for m in engine.rank(user, [], 5, now=T0).items]
        assert set(top) <= retrieved
        # the retrieved short movies come first
        n_short = min(5, sum(short(i) for i in retrieved))
        assert n_short and all(short(i) for i in top[:n_short]), (top, retrieved)


@pytest.mark.parametrize("clock", ["events", "wall"])
def test_the_service_ranks_with_the_stores_event_time_clock(world: dict, tmp_path: Path,
                                                            clock: str) -> None:
    """The ranker's time features are taken at the online store's watermark (the lake's clock,
    simulated or not), or at the wall clock with ``serving.clock=wall``."""
    import asyncio
    import shutil
    import time as _time

    from model_server.service import Recommendations
    from model_server.swap import ModelHolder
    from movierec_core.events import WatchMinute
    from movierec_core.online_store import SqliteOnlineStore

    ranker, _ = train_ranker(world["first"], world["requests"], world["watches"],
                             world["history"], world["items"],
                             RankerSettings(min_requests=20, min_data_in_leaf=5))
    bundle = tmp_path / "b"
    shutil.copytree(world["bundle"], bundle)
    ranker.save(bundle)
    store = SqliteOnlineStore(tmp_path / "online.sqlite")
    user = int(world["first"].user_ids[3])
    store.apply([WatchMinute(T0 + timedelta(minutes=m), user, "movie+5+2000", m)
                 for m in range(30)])
    holder: ModelHolder[Engine] = ModelHolder(load=Engine.load, resolve=lambda ref: bundle)
    holder.load_initial()
    seen: list = []
    real = holder.current.rank

    def spy(*args, **kwargs):
        seen.append(kwargs.get("now"))
        return real(*args, **kwargs)

    holder.current.rank = spy
    service = Recommendations(holder, store_factory=lambda: store, demographics=None,
                              deadline_ms=1000, cost_lambda=0.0, fold_in=True,
                              history_limit=500, threads=0, erased_poll_s=0.05, clock=clock)
    deadline = _time.monotonic() + 5
    while clock == "events" and service.watermark is None and _time.monotonic() < deadline:
        _time.sleep(0.02)
    answer = asyncio.run(service.recommend(user, 10))
    service.close()
    assert answer.source == "fold_in" and "movie+5+2000" not in answer.items
    expected = T0 + timedelta(minutes=29) if clock == "events" else None
    assert seen == [expected]
    with pytest.raises(ValueError, match="events or wall"):
        Recommendations(holder, store_factory=None, demographics=None, deadline_ms=1,
                        cost_lambda=0.0, fold_in=True, history_limit=1, clock="sundial")


def _bundle_with_ranker(world: dict, tmp_path: Path, **settings) -> Path:
    """A copy of the world's bundle with a ranker trained on its requests."""
    import shutil

    ranker, _ = train_ranker(world["first"], world["requests"], world["watches"],
                             world["history"], world["items"],
                             RankerSettings(enabled=True, min_requests=20, min_data_in_leaf=5,
                                            candidates=30, **settings))
    bundle = tmp_path / "b"
    shutil.copytree(world["bundle"], bundle)
    ranker.save(bundle)
    return bundle


def test_the_compiled_ranker_scores_like_lightgbm_and_the_engine_serves_the_same_lists(
        world: dict, tmp_path: Path) -> None:
    """lleaves' machine code for the trees: LightGBM's scores (to float64 rounding: it sums
    the trees in another order) on rows with zeros and missing values, the same lists served,
    and the compiled object reused from the cache by the next engine."""
    bundle = _bundle_with_ranker(world, tmp_path, early_stopping_rounds=20)
    loaded = Ranker.load(bundle)
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((500, loaded.booster.num_feature())) * 3
    rows[rng.random(rows.shape) < 0.1] = 0.0
    rows[rng.random(rows.shape) < 0.05] = np.nan
    expected = loaded.score(rows)
    cache = tmp_path / "compiled"
    assert loaded.compile(cache) > 0 and loaded.compiled is not None
    assert len(list(cache.glob("ranker-*.o"))) == 1
    got = loaded.score(rows)
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.unique(expected).size > 20  # rows reach many different leaves
    # the server's rows are float32 (movierec_core.features.candidate_features)
    rows32 = rows.astype(np.float32)
    np.testing.assert_allclose(loaded.score(rows32), Ranker.load(bundle).score(rows32),
                               rtol=1e-12, atol=1e-12)
    # called directly with this thread's buffers (grown for 500 rows, then reused for fewer):
    # bit for bit what lleaves' own predict answers
    for batch in (rows, rows32[:7], rows[:1]):
        np.testing.assert_array_equal(loaded.compiled.predict(batch),
                                      loaded.compiled.model.predict(batch, n_jobs=1))
    with pytest.raises(ValueError, match="dimension"):
        loaded.compiled.predict(rows[:, :-1])

    plain = Engine.load(bundle)
    compiled = Engine.load(bundle, compile_ranker="blocking", compile_cache=str(cache))
    assert plain.ranker.compiled is None and compiled.ranker.compiled is not None
    assert len(list(cache.glob("ranker-*.o"))) == 1  # loaded from the cache, not compiled again
    for user in world["first"].user_ids[:20].tolist():
        assert compiled.rank(user, [], 10, now=T0).items == plain.rank(user, [], 10, now=T0).items
    with pytest.raises(ValueError, match="compile_ranker must be off, background or blocking"):
        Engine.load(bundle, compile_ranker="yes")


def test_a_ranker_that_cannot_be_compiled_keeps_scoring_with_lightgbm(
        world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    bundle = _bundle_with_ranker(world, tmp_path)

    def broken(self, cache_dir=None):
        raise RuntimeError("LLVM says no")

    monkeypatch.setattr(Ranker, "compile", broken)
    engine = Engine.load(bundle, compile_ranker="blocking")
    assert engine.ranker.compiled is None
    assert "compiling the ranker" in caplog.text and "LLVM says no" in caplog.text
    user = world["first"].user_ids[0]
    assert engine.rank(int(user), [], 10, now=T0).items == Engine.load(bundle).rank(
        int(user), [], 10, now=T0).items
