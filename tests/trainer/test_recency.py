"""How the trainer weighs time (issue 22): recency-decayed confidences, and the temporal
evaluation choosing the half-life; after a taste shift the decayed model wins and is the one
registered."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from movierec_core.models import load_bundle
from movierec_core.registry import FileRegistry
from movierec_core.snapshot import create_snapshot
from tests.trainer.conftest import overrides
from trainer.cli import main
from trainer.data import decayed
from trainer.synthetic import synthetic_tables, write_lake


def test_decay_halves_per_half_life_and_keeps_old_pairs_seen() -> None:
    now = pd.Timestamp("2025-03-10 12:00")
    pairs = pd.DataFrame({"user_id": [1, 1, 1, 1], "movie_id": ["a", "b", "c", "d"],
                          "last_time": [now, now - pd.Timedelta(hours=6),
                                        now - pd.Timedelta(hours=12), now - pd.Timedelta(days=400)],
                          "confidence": [2.0, 2.0, 2.0, 2.0]})
    got = decayed(pairs, 6.0, now)["confidence"].to_numpy()
    assert np.allclose(got, [2.0, 1.0, 0.5, 2e-4])
    assert decayed(pairs, 0.0) is pairs
    assert np.allclose(decayed(pairs, 6.0)["confidence"], got)  # now: the newest pair


def test_after_a_taste_shift_the_evaluation_picks_the_decayed_model(tmp_path) -> None:
    lake = tmp_path / "lake"
    write_lake(lake, synthetic_tables(n_users=240, n_movies=90, seed=5, days=40, drift_day=28))
    snap = create_snapshot(lake)["snapshot_id"]
    assert main(overrides(lake, tmp_path, f"snapshot={snap}", "trainer.candidates=[als]",
                          "trainer.recency.half_lives_h=[0,48]", "trainer.test_fraction=0.15",
                          "trainer.retrieval.enabled=false")) == 0
    bundle = FileRegistry(tmp_path / "registry").resolve("movierec", "champion")
    manifest = load_bundle(bundle).manifest
    comparison = json.loads((bundle / "report" / "comparison.json").read_text())
    rows = {r["model"]: r for r in comparison["rows"]}
    assert set(rows) == {"als", "als@48h"} and rows["als@48h"]["half_life_h"] == 48
    assert rows["als@48h"]["ndcg@10"] > rows["als"]["ndcg@10"]
    assert comparison["selected"] == "als@48h"
    assert manifest["recency"] == {"half_life_h": 48.0, "half_lives_h": [0.0, 48.0],
                                   "user_half_life_h": 0.0, "user_half_lives_h": [0.0]}


def _drift_lake(tmp_path):
    lake = tmp_path / "lake"
    write_lake(lake, synthetic_tables(n_users=240, n_movies=90, seed=5, days=40, drift_day=28))
    return lake, create_snapshot(lake)["snapshot_id"]


def test_the_evaluation_compares_per_user_recency_and_registers_the_best(tmp_path) -> None:
    lake, snap = _drift_lake(tmp_path)
    assert main(overrides(lake, tmp_path, f"snapshot={snap}", "trainer.candidates=[als,ease]",
                          "trainer.recency.user_half_lives_h=[0,24]", "trainer.test_fraction=0.15",
                          "trainer.retrieval.enabled=false")) == 0
    bundle = FileRegistry(tmp_path / "registry").resolve("movierec", "champion")
    comparison = json.loads((bundle / "report" / "comparison.json").read_text())
    rows = {r["model"]: r for r in comparison["rows"]}
    # a user's own recency re-derives user vectors: factor models only (EASE has none)
    assert set(rows) == {"als", "als/user@24h", "ease"}
    assert rows["als/user@24h"]["user_half_life_h"] == 24 and rows["als"]["user_half_life_h"] == 0
    assert rows["als/user@24h"]["ndcg@10"] != rows["als"]["ndcg@10"]
    best = max(rows, key=lambda m: rows[m]["ndcg@10"])
    assert comparison["selected"] == best
    recency = load_bundle(bundle).manifest["recency"]
    assert recency["user_half_life_h"] == rows[best]["user_half_life_h"]
    assert recency["user_half_lives_h"] == [0.0, 24.0]


def test_a_model_with_per_user_recency_keeps_the_decayed_rows_its_users_were_folded_in_from(
        tmp_path) -> None:
    """The bundle's rows are every pair's confidence weighed by the user half-life (what the
    model server folds in beside the online store's events); the user vectors are those rows
    folded in with the model's item factors."""
    from movierec_core.models import ConfidenceWeights
    from movierec_core.snapshot import load_snapshot
    from trainer.data import InteractionMatrix, aggregate_pairs, events_from_tables, movie_side

    lake, snap = _drift_lake(tmp_path)
    assert main(overrides(lake, tmp_path, f"snapshot={snap}", "trainer.candidates=[als]",
                          "trainer.recency.user_half_lives_h=[24]", "trainer.test_fraction=0.15",
                          "trainer.retrieval.enabled=false")) == 0
    b = load_bundle(FileRegistry(tmp_path / "registry").resolve("movierec", "champion"),
                    mmap=False)
    assert b.manifest["recency"]["user_half_life_h"] == 24.0
    tables = load_snapshot(lake, snap)
    events, _ = events_from_tables(tables, 5)
    pairs = aggregate_pairs(events, movie_side(tables), ConfidenceWeights(**b.manifest["confidence"]))
    plain = InteractionMatrix.from_pairs(pairs)
    expected = InteractionMatrix.from_pairs(decayed(pairs, 24.0))
    assert np.array_equal(np.asarray(b.user_ids), expected.user_ids)
    np.testing.assert_allclose(b.seen.toarray(), expected.matrix.toarray(), rtol=1e-6)
    assert not np.allclose(b.seen.toarray(), plain.matrix.toarray())  # old pairs weigh less
    assert b.seen.nnz == plain.matrix.nnz  # ... and stay seen
    stored = np.array(b.model.user_factors)
    b.model.refold_users(b.seen)
    np.testing.assert_allclose(b.model.user_factors, stored, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        b.model.refold_users(b.seen[:5])
