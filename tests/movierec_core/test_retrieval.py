"""Candidate retrieval (issue 22): the ANN index finds the exact top-n of structured factors,
survives its files, and the model server's two-stage ranking equals exact ranking when the
candidates cover what exact ranking would pick."""

from __future__ import annotations

import numpy as np
import pytest

from model_server.engine import Answer, Engine
from movierec_core.models.retrieval import (
    INDEX_FILE,
    AnnIndex,
    RetrievalConfig,
    build_for_bundle,
    exact_top,
    recall_at,
)
from movierec_core.models.testing import tiny_bundle


def clustered_factors(n_items: int, n_users: int, dim: int = 32, seed: int = 0):
    """Items and users around 20 taste centres with popularity-like norms (what ALS learns)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    items = centres[rng.integers(0, 20, n_items)] + 0.5 * rng.normal(size=(n_items, dim))
    items *= rng.lognormal(0.0, 0.5, (n_items, 1))
    users = centres[rng.integers(0, 20, n_users)] + 0.5 * rng.normal(size=(n_users, dim))
    return items.astype(np.float32), users.astype(np.float32)


# the plain inner-product graph is the weak kind on these log-normal norms (why ``auto`` exists):
# 0.56 with 16 links per node, 0.74 with 32
@pytest.mark.parametrize(("kind", "floor"), [("auto", 0.95), ("hnsw_mips", 0.95),
                                             ("hnsw_ip", 0.5), ("ivf", 0.7)])
def test_the_index_finds_the_exact_top_n(kind: str, floor: float) -> None:
    items, users = clustered_factors(5000, 200)
    config = RetrievalConfig(kind=kind, candidates=100, nlist=64, nprobe=8, recall_users=100)
    index = build_for_bundle(items, users[:100], config)
    assert index.config.kind == ("hnsw_mips" if kind == "auto" else kind)
    assert recall_at(index, items, users[100:], 100) >= floor  # users it was not chosen on
    # the reference is exact: a brute-force top 100 of each user
    exact = exact_top(items, users[:3], 100)
    brute = np.argsort(-(users[:3] @ items.T), axis=1)[:, :100]
    assert all(set(a) == set(b) for a, b in zip(exact, brute, strict=True))


def test_files_round_trip_and_record_the_recall(tmp_path) -> None:
    items, users = clustered_factors(3000, 300)
    index = build_for_bundle(items, users, RetrievalConfig(candidates=50, recall_users=100))
    assert 0.95 <= index.meta["recall_at_candidates"] <= 1.0
    assert index.meta["recall_users"] == 100
    index.save(tmp_path)
    loaded = AnnIndex.load(tmp_path)
    assert loaded.meta["recall_at_candidates"] == index.meta["recall_at_candidates"]
    for u in users[:10]:
        assert np.array_equal(loaded.search(u, 50), index.search(u, 50))
    assert AnnIndex.load(tmp_path / "nothing") is None
    with pytest.raises(ValueError, match="auto, hnsw_ip, hnsw_mips or ivf"):
        AnnIndex.build(items, RetrievalConfig(kind="lsh"))


def _engines(tmp_path, candidates: int) -> tuple[Engine, Engine]:
    bundle = tiny_bundle(tmp_path / "b", n_users=60, n_items=40)
    engine = Engine.load(bundle)
    build_for_bundle(engine.model.item_factors, engine.model.user_factors,
                     RetrievalConfig(candidates=candidates)).save(bundle)
    return engine, Engine.load(bundle, retrieval="ann", candidates=candidates)


@pytest.mark.parametrize("cost_lambda", [0.0, 0.5])
def test_two_stage_equals_exact_when_the_candidates_cover_the_catalogue(tmp_path,
                                                                        cost_lambda) -> None:
    exact, two_stage = _engines(tmp_path, candidates=40)
    assert two_stage.retrieval is not None and exact.retrieval is None
    for row in range(60):
        user = 1000 + 10 * row
        a = exact.rank(user, [], 10, cost_lambda=cost_lambda)
        b = two_stage.rank(user, [], 10, cost_lambda=cost_lambda)
        assert isinstance(a, Answer) and isinstance(b, Answer)
        assert a.items == b.items, row


def test_two_stage_ranks_only_retrieved_unseen_candidates(tmp_path) -> None:
    _, engine = _engines(tmp_path, candidates=12)
    row, user = 7, 1070
    u = engine.model.user_factors[row]
    start, end = engine.seen_indptr[row:row + 2]
    seen = set(engine.seen_indices[start:end].tolist())
    retrieved = set(engine.retrieval.search(u, 12 + len(seen)).tolist()) - seen
    answer = engine.rank(user, [], 5)
    indices = [engine._item_index[m] for m in answer.items]
    assert len(indices) == 5 and set(indices) <= retrieved and not set(indices) & seen
    scores = engine.model.item_factors[indices] @ u
    assert list(scores) == sorted(scores, reverse=True)


def test_a_bundle_without_an_index_ranks_exactly(tmp_path) -> None:
    bundle = tiny_bundle(tmp_path / "b")
    assert not (bundle / INDEX_FILE).exists()
    engine = Engine.load(bundle, retrieval="ann")
    assert engine.retrieval is None
    assert engine.rank(1000, [], 5).items == Engine.load(bundle).rank(1000, [], 5).items
    with pytest.raises(ValueError, match="exact or ann"):
        Engine.load(bundle, retrieval="fast")


@pytest.mark.parametrize("kind", ["hnsw_ip", "hnsw_mips", "ivf"])
def test_a_search_that_excludes_returns_the_best_of_the_rest_with_their_scores(kind: str) -> None:
    items, users = clustered_factors(2000, 10)
    items /= np.linalg.norm(items, axis=1, keepdims=True)  # equal norms: every kind finds them
    index = AnnIndex.build(items, RetrievalConfig(kind=kind, nlist=16, nprobe=16))
    user = users[0]
    exact = items @ user
    seen = np.argsort(-exact)[:30]  # the user's 30 best: what a search without them must skip
    found, scores = index.search_scored(user, 50, exclude=seen)
    assert found.size == 50 and not set(found.tolist()) & set(seen.tolist())
    allowed = np.setdiff1d(np.arange(items.shape[0]), seen)
    best = allowed[np.argsort(-exact[allowed])[:50]]
    assert len(set(found.tolist()) & set(best.tolist())) >= 45
    if kind == "hnsw_mips":  # distances in the augmented space, not inner products
        assert scores is None
    else:
        np.testing.assert_allclose(scores, exact[found], rtol=1e-5, atol=1e-4)
    # fewer left than asked for: every allowed item once, nothing padded
    few = AnnIndex.build(items[:60], RetrievalConfig(kind="hnsw_ip"))
    found, scores = few.search_scored(user, 50, exclude=np.arange(20))
    assert sorted(found.tolist()) == list(range(20, 60)) and scores.size == 40


@pytest.mark.parametrize("kind", ["hnsw_ip", "ivf"])
def test_searches_one_after_another_exclude_only_their_own_items(kind: str) -> None:
    """The selector's bitmap is reused per thread: each search excludes exactly what it names
    (a few items, bits cleared one by one; hundreds, packed), never the previous search's, on
    every thread, with the results of a search with a bitmap of its own."""
    import threading

    import faiss

    items, users = clustered_factors(2000, 10)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    index = AnnIndex.build(items, RetrievalConfig(kind=kind, nlist=16, nprobe=16))

    def reference(user, n, seen):
        allowed = np.ones(items.shape[0], dtype=bool)
        allowed[seen] = False
        bits = np.packbits(allowed, bitorder="little")
        params = index._new_params(n)
        params.sel = faiss.IDSelectorBitmap(items.shape[0], faiss.swig_ptr(bits))
        _, found = index.index.search(index._query(user[None, :]), n, params=params)
        return found[0][found[0] >= 0]

    rng = np.random.default_rng(3)
    plans = [(users[i % 10], n, np.argsort(-(items @ users[i % 10]))[:many])
             for i, (n, many) in enumerate([(50, 30), (20, 3), (50, 0), (30, 300), (50, 1),
                                            (40, 64), (40, 65), (10, 7)])]
    plans += [(users[i], 25, rng.choice(2000, 40, replace=False)) for i in range(10)]
    errors = []

    def run() -> None:
        try:
            for user, n, seen in plans * 3:
                found, _ = index.search_scored(user, n, exclude=seen)
                assert not set(found.tolist()) & set(seen.tolist())
                np.testing.assert_array_equal(found, reference(user, n, seen))
        except AssertionError as exc:  # raised on a thread: reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run()
    assert not errors, errors[0]
