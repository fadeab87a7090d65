"""Drift -> retrain -> a new registered model: the job's local trigger runs the real trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from drift.config import register_configs
from drift.job import run_job
from movierec_core.config import compose
from movierec_core.registry import FileRegistry
from movierec_core.snapshot import create_snapshot
from tests.drift.lakeutil import write_catalog, write_window
from tests.drift.world import World
from trainer.synthetic import synthetic_tables, write_lake

pytestmark = pytest.mark.integration


def test_taste_shift_triggers_trainer_which_registers_a_new_version(tmp_path: Path) -> None:
    lake_root, registry_root = tmp_path / "lake", tmp_path / "registry"
    write_lake(lake_root, synthetic_tables(n_users=240, n_movies=90, seed=3))
    create_snapshot(lake_root)  # what the trainer trains on (`snapshot=latest`)
    world = World(2)
    write_window(lake_root, world.window(0), "w0")
    world.shift_tastes(genre=2, strength=0.6)
    write_window(lake_root, world.window(1), "w1")
    write_catalog(lake_root, world.catalog(), "drift-catalog")
    assert FileRegistry(registry_root).versions("movierec") == []

    trainer = ",".join([
        "'{python}'", "-m", "trainer", f"'data.lake_root={lake_root}'",
        f"'data.registry_root={registry_root}'", f"'trainer.output_dir={tmp_path}/runs'",
        "'trainer.report_plots=false'", "'trainer.candidates=[popularity]'",
    ])
    register_configs()
    cfg = compose("drift", [f"data.lake_root={lake_root}", "drift.current_hours=1",
                            "drift.reference_hours=1", f"drift.retrain.command=[{trainer}]"])
    result = run_job(cfg)

    assert result.run.is_drift
    assert result.report["retrain"]["ok"] is True, result.report["retrain"]["stderr_tail"]
    versions = FileRegistry(registry_root).versions("movierec")
    assert len(versions) == 1
