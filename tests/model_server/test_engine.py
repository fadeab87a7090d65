"""The engine on the trainer's tiny bundle: exclusion, fold-in, cold start, costs, fallback."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from model_server.engine import Answer, ColdStart, Engine
from movierec_core.models.bundle import load_bundle
from movierec_core.models.testing import tiny_bundle
from movierec_core.online_store import UserInteraction
from tests.model_server.helpers import expected_fold_in, expected_known, expected_popularity

T = datetime(2025, 3, 2)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("engine") / "b")


@pytest.fixture(scope="module")
def engine(bundle_dir: Path) -> Engine:
    return Engine.load(bundle_dir)


def watched(movie: str, minutes: int = 90, stars: int | None = None) -> UserInteraction:
    return UserInteraction(movie, minutes, minutes - 1, stars, T)


def test_known_user_gets_stored_factor_ranking_without_training_history(
        engine: Engine, bundle_dir: Path) -> None:
    answer = engine.rank(1000, [], 20)
    assert isinstance(answer, Answer)
    assert (answer.source, answer.cold_start) == ("model", False)
    assert answer.items == expected_known(bundle_dir, 1000)
    seen = set(load_bundle(bundle_dir).movie_ids(load_bundle(bundle_dir).seen_items(0)))
    assert not seen & set(answer.items)


def test_movie_watched_online_is_excluded_and_folded_in(engine: Engine, bundle_dir: Path) -> None:
    top = expected_known(bundle_dir, 1000)[0]
    answer = engine.rank(1000, [watched(top)], 20)
    assert answer.source == "fold_in"
    assert top not in answer.items
    assert answer.items == expected_fold_in(bundle_dir, 1000, {top: 0.9})


def test_online_events_already_in_training_need_no_fold_in(engine: Engine,
                                                             bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    old = b.movie_ids(b.seen_items(0))[0]
    answer = engine.rank(1000, [watched(old, minutes=1)], 20)
    assert answer.source == "model"
    assert answer.items == expected_known(bundle_dir, 1000)


def test_fold_in_off_still_excludes_fresh_movies(engine: Engine, bundle_dir: Path) -> None:
    top = expected_known(bundle_dir, 1000)[0]
    answer = engine.rank(1000, [watched(top)], 20, fold_in=False)
    assert answer.source == "model"
    assert answer.items == expected_known(bundle_dir, 1000, extra_seen=(top,))


def test_movies_unknown_to_the_model_are_ignored(engine: Engine, bundle_dir: Path) -> None:
    answer = engine.rank(1000, [watched("never+heard+of+it+2031")], 20)
    assert answer.items == expected_known(bundle_dir, 1000)


def test_cost_lambda_reranks_towards_cheap_movies(engine: Engine, bundle_dir: Path) -> None:
    answer = engine.rank(1000, [], 20, cost_lambda=2.0)
    assert answer.items == expected_known(bundle_dir, 1000, cost_lambda=2.0)
    b = load_bundle(bundle_dir)
    mean_cost = lambda items: sum(float(b.costs[b.item_index(m)]) for m in items) / len(items)  # noqa: E731
    assert mean_cost(answer.items[:10]) < mean_cost(engine.rank(1000, [], 20).items[:10])


def test_unknown_user_without_events_needs_a_cold_start(engine: Engine, bundle_dir: Path) -> None:
    unknown = engine.rank(5, [], 20)
    assert unknown == ColdStart(frozenset())
    popular = engine.cold_start(None, 20, unknown)
    assert (popular.source, popular.cold_start) == ("popularity", True)
    assert popular.items == expected_popularity(bundle_dir)
    segment = engine.cold_start((22, "F", "writer"), 20, unknown)
    b = load_bundle(bundle_dir)
    assert segment.source == "segment"
    assert segment.items == b.movie_ids(b.cold_start_items(22, "F", "writer", k=20))


def test_unknown_user_with_events_is_folded_in(engine: Engine, bundle_dir: Path) -> None:
    movie = load_bundle(bundle_dir).movie_ids([2])[0]
    answer = engine.rank(5, [watched(movie)], 20)
    assert (answer.source, answer.cold_start) == ("fold_in", True)
    assert answer.items == expected_fold_in(bundle_dir, 5, {movie: 0.9})


def test_fallback_is_global_popularity(engine: Engine, bundle_dir: Path) -> None:
    assert engine.fallback(20).items == expected_popularity(bundle_dir)
    assert engine.fallback(3).items == expected_popularity(bundle_dir, k=3)
    assert engine.fallback(20).source == "fallback"


def test_provenance_comes_from_the_manifest(engine: Engine) -> None:
    assert engine.provenance == {"model_version": "tiny", "model_type": "als",
                                 "code_version": "test", "snapshot_id": "tiny",
                                 "snapshot_hash": "0" * 64}


def test_confidence_rule_comes_from_the_trainers_config() -> None:
    from model_server.engine import confidence_weights

    trained = {"trainer": {"confidence": {"watch": 2.0, "rating": 0.5, "dislike_below": 2,
                                          "default_runtime": 90.0},
                           "rating_scale_max": 10}}
    w = confidence_weights(trained, 5)
    assert (w.watch, w.rating, w.dislike_below, w.default_runtime, w.scale_max) == (
        2.0, 0.5, 2, 90.0, 10)
    assert confidence_weights({}, 5).scale_max == 5
    assert confidence_weights({"trainer": {"rating_scale_max": None}}, 7).scale_max == 7


def test_user_rows_with_compact_int32_ids_and_ids_beyond_them(tmp_path):
    """The bundle stores int32 user ids when they fit; lookups of any id stay exact."""
    engine = Engine.load(tiny_bundle(tmp_path / "b"))
    assert engine.user_ids.dtype.itemsize == 4
    assert engine.user_row(1000) == 0 and engine.user_row(1590) == 59
    assert [engine.user_row(u) for u in (0, 1001, 2**31 - 1, 2**31, 2**40, 2**63 - 1)] == [-1] * 6


def test_user_rows_of_consecutive_ids_and_of_a_run_with_gaps(tmp_path):
    """Rows are the offset from the first id when the bundle's ids run without a gap (found
    once at load, from the file), by binary search otherwise: the same rows either way; the
    mapped seen arrays are read from their files on demand, the same rows as mapped."""
    import numpy as np

    from model_server.npy_rows import NpyRows
    from movierec_core.models.bundle import load_bundle

    engine = Engine.load(tiny_bundle(tmp_path / "b"))  # ids 1000, 1010, ...: offsets miss
    expected = {1000 + 10 * r: r for r in range(60)}
    assert not engine._consecutive
    assert {u: engine.user_row(u) for u in expected} == expected
    for name, ids, consecutive in (("run", np.arange(7, 67), True),
                                   ("gaps", np.r_[np.arange(7, 37), np.arange(40, 70)], False),
                                   ("repeat", np.r_[np.arange(7, 36), 35, np.arange(37, 67)],
                                    False)):
        directory = tiny_bundle(tmp_path / name)
        dtype = np.load(directory / "user_ids.npy").dtype
        np.save(directory / "user_ids.npy", ids.astype(dtype))
        engine = Engine.load(directory)
        assert engine._consecutive is consecutive, name
        rows = {}
        for r, u in enumerate(ids.tolist()):
            rows.setdefault(u, r)
        assert [engine.user_row(u) for u in range(0, 80)] == [rows.get(u, -1)
                                                             for u in range(0, 80)], name
    mapped = load_bundle(directory)
    assert isinstance(engine.seen_indptr, NpyRows) and isinstance(engine.seen_indices, NpyRows)
    for row in range(60):
        start, end = (int(v) for v in engine.seen_indptr[row:row + 2])
        assert (start, end) == (int(mapped.seen_indptr[row]), int(mapped.seen_indptr[row + 1]))
        assert engine.seen_indices[start:end].tolist() == mapped.seen_indices[start:end].tolist()


def test_a_bundle_trained_with_recency_folds_in_online_events_by_their_age(
        bundle_dir: Path, tmp_path: Path) -> None:
    """The bundle's users were weighed by a 2-hour half-life (``trainer.recency``): an online
    event counts ``0.5 ** (age / 2 h)`` at the request's instant, as the trainer counts it."""
    import shutil

    from movierec_core.models.bundle import read_manifest, write_manifest

    decaying = tmp_path / "decaying"
    shutil.copytree(bundle_dir, decaying)
    write_manifest(decaying, {**read_manifest(decaying),
                              "recency": {"half_life_h": 0.0, "user_half_life_h": 2.0}})
    engine = Engine.load(decaying)
    assert engine.fold_in_half_life_h == 2.0
    top = expected_known(bundle_dir, 1000)[0]
    fresh, old = watched(top), UserInteraction(top, 90, 89, None, datetime(2025, 3, 1, 20))
    # 90 of 100 minutes = 0.9; four hours old at T: a quarter of it
    now = engine.rank(1000, [fresh], 20, now=T)
    later = engine.rank(1000, [old], 20, now=T)
    assert now.items == expected_fold_in(bundle_dir, 1000, {top: 0.9})
    assert later.items == expected_fold_in(bundle_dir, 1000, {top: 0.225})
    assert later.source == "fold_in" and top not in later.items  # still seen, still excluded
    # without recency in the manifest, age does not matter
    assert Engine.load(bundle_dir).rank(1000, [old], 20, now=T).items == now.items
