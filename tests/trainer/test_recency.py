"""How the trainer weighs time (issue 22): recency-decayed confidences, and the temporal
evaluation choosing the half-life; after a taste shift the decayed model wins and is the one
registered."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

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
    assert manifest["recency"] == {"half_life_h": 48.0, "half_lives_h": [0.0, 48.0]}
