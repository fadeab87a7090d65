"""The main run end to end on a synthetic lake: candidates, report, registry, reproducibility."""

from __future__ import annotations

import json

import pytest

from movierec_core.models import load_bundle
from movierec_core.registry import FileRegistry
from tests.trainer.conftest import overrides
from trainer.cli import load_config, main
from trainer.pipeline import run

FAST = "trainer.candidates=[als,bpr,ease,itemknn,popularity]"


def test_given_a_snapshot_when_trained_then_champion_registered_with_report(synthetic_lake, tmp_path, capsys):
    lake, snap = synthetic_lake
    rc = main(overrides(lake, tmp_path, f"snapshot={snap}", FAST, "trainer.report_plots=true"))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "registered movierec v0001" in out
    reg = FileRegistry(tmp_path / "registry")
    assert reg.get_alias("movierec", "champion") == "v0001"
    assert reg.get_alias("movierec", "challenger") == "v0001"
    bundle_dir = reg.resolve("movierec", "champion")
    b = load_bundle(bundle_dir)
    m = b.manifest
    assert m["version"] == "v0001" and m["model_name"] == "movierec"
    assert m["snapshot"]["id"] == snap and len(m["snapshot"]["hash"]) == 64
    assert len(m["code_version"]) >= 7
    assert m["config"]["trainer"]["snapshot"] == snap
    assert m["model_type"] == m["config"]["selected_model"]["name"]
    assert {"ndcg@10", "precision@20", "map@10", "coverage@10"} <= set(m["metrics"]["warm"])
    assert {"final_fit_s", "load_snapshot_s", "candidates_s"} <= set(m["timings"])
    report = bundle_dir / "report"
    for name in ("report.md", "comparison.json", "quality.png", "cost.png", "subpopulations.png"):
        assert (report / name).is_file(), name
    comp = json.loads((report / "comparison.json").read_text())
    assert [r["model"] for r in comp["rows"]] == ["als", "bpr", "ease", "itemknn", "popularity"]
    for r in comp["rows"]:
        assert r["fit_s"] >= 0 and r["batch_ms_per_user"] > 0 and r["disk_bytes"] > 0
    assert {"light", "heavy", "gender F", "gender M"} <= set(comp["subpopulations"]["als"])
    assert comp["cold_start"]["cold_start"]["users"] == comp["split"]["new_users"] > 0
    # personalised candidates beat the popularity baseline on this taste-structured data
    best = max(comp["rows"], key=lambda r: r["ndcg@10"])
    pop = next(r for r in comp["rows"] if r["model"] == "popularity")
    assert best["model"] != "popularity" and best["ndcg@10"] > pop["ndcg@10"]
    # everything the server needs: known users' rows, costs in 0..1, cold-start lists
    assert b.user_row(1) is not None and 0 <= float(b.costs.max()) <= 1.0
    assert len(b.cold_start_items(30, "F", "writer", k=10)) == 10

    # a second run only moves the challenger; promote=true moves the champion
    assert main(overrides(lake, tmp_path, "trainer.candidates=[popularity]")) == 0
    assert (reg.get_alias("movierec", "champion"), reg.get_alias("movierec", "challenger")) == ("v0001", "v0002")
    assert main(overrides(lake, tmp_path, "trainer.candidates=[popularity]", "promote=true")) == 0
    assert reg.get_alias("movierec", "champion") == "v0003"

    # registry commands
    assert main(["list", *overrides(lake, tmp_path)]) == 0
    assert "v0003  popularity" in capsys.readouterr().out
    assert main(["rollback", *overrides(lake, tmp_path)]) == 0
    assert reg.get_alias("movierec", "champion") == "v0001"
    assert main(["promote", "v0002", *overrides(lake, tmp_path)]) == 0
    assert reg.get_alias("movierec", "champion") == "v0002"
    capsys.readouterr()
    assert main(["show", "champion", *overrides(lake, tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "v0002"
    assert main(["show", "v0042", *overrides(lake, tmp_path)]) == 2
    assert "no version 'v0042'" in capsys.readouterr().err


def _metrics(cfg):
    res = run(cfg)
    comp = json.loads((res.bundle_dir / "report" / "comparison.json").read_text())
    drop = {"fit_s", "batch_ms_per_user", "single_ms_per_user"}
    return [{k: v for k, v in r.items() if k not in drop} for r in comp["rows"]], res


def test_same_data_config_seed_give_identical_metrics(synthetic_lake, tmp_path):
    lake, _ = synthetic_lake
    cfg = load_config(overrides(lake, tmp_path, "trainer.candidates=[als,bpr,ease,itemknn]"))
    first, r1 = _metrics(cfg)
    second, r2 = _metrics(cfg)
    assert first == second
    assert (r1.version, r2.version) == ("v0001", "v0002")
    b1, b2 = load_bundle(r1.bundle_dir), load_bundle(r2.bundle_dir)
    assert b1.model.model_type == b2.model.model_type
    for name in ("user_ids.npy", "item_ids.npy", "seen_indices.npy", "popularity.npy"):
        assert (r1.bundle_dir / name).read_bytes() == (r2.bundle_dir / name).read_bytes()


def test_tuning_uses_a_validation_split_carved_from_training(synthetic_lake, tmp_path):
    lake, _ = synthetic_lake
    cfg = load_config(overrides(lake, tmp_path, "trainer.candidates=[ease,popularity]",
                                "trainer.tune.enabled=true", "trainer.tune.models=[ease]",
                                "trainer.tune.n_trials=3"))
    res = run(cfg)
    comp = json.loads((res.bundle_dir / "report" / "comparison.json").read_text())
    tuned = comp["tuning"]["ease"]
    assert len(tuned["trials"]) == 3 and tuned["validation_users"] > 0
    ease_row = next(r for r in comp["rows"] if r["model"] == "ease")
    assert ease_row["config"]["l2"] == pytest.approx(tuned["best_params"]["l2"])
    assert "l2" in json.dumps(res.metrics) or res.model_type in ("ease", "popularity")


def test_a_factor_model_bundle_carries_its_ann_index_and_recall(synthetic_lake, tmp_path) -> None:
    from movierec_core.models.retrieval import INDEX_FILE, AnnIndex

    lake, snap = synthetic_lake
    assert main(overrides(lake, tmp_path, f"snapshot={snap}", "trainer.candidates=[als]",
                          "trainer.retrieval.candidates=30",
                          "trainer.retrieval.recall_users=50")) == 0
    bundle = FileRegistry(tmp_path / "registry").resolve("movierec", "champion")
    info = load_bundle(bundle).manifest["retrieval"]
    assert info["candidates"] == 30 and info["recall_users"] == 50
    assert set(info["recall_by_kind"]) == {"hnsw_ip", "hnsw_mips"}
    assert info["recall_at_candidates"] == max(info["recall_by_kind"].values()) >= 0.9
    hashes = json.loads((bundle / "hashes.json").read_text())
    assert INDEX_FILE in hashes and "retrieval.json" in hashes  # verified at load like the rest
    assert AnnIndex.load(bundle).config.kind == info["kind"]


def test_retrieval_off_writes_no_index(synthetic_lake, tmp_path) -> None:
    from movierec_core.models.retrieval import INDEX_FILE

    lake, snap = synthetic_lake
    assert main(overrides(lake, tmp_path, f"snapshot={snap}", "trainer.candidates=[als]",
                          "trainer.retrieval.enabled=false")) == 0
    bundle = FileRegistry(tmp_path / "registry").resolve("movierec", "champion")
    assert not (bundle / INDEX_FILE).exists()
    assert "retrieval" not in load_bundle(bundle).manifest
