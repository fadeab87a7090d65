"""A synthetic lake with one snapshot, shared by the trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from movierec_core.snapshot import create_snapshot
from trainer.synthetic import synthetic_tables, write_lake


@pytest.fixture(scope="session")
def synthetic_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("lake")
    write_lake(root, synthetic_tables(n_users=240, n_movies=90, seed=3))
    return root, create_snapshot(root)["snapshot_id"]


def overrides(lake: Path, tmp: Path, *extra: str) -> list[str]:
    return [f"data.lake_root={lake}", f"data.registry_root={tmp}/registry",
            f"trainer.output_dir={tmp}/runs", "trainer.report_plots=false", *extra]
