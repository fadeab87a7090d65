"""Bad input gives a clear line on stderr and a non-zero exit, or follows a documented rule."""

from __future__ import annotations

import pandas as pd
import pytest

from movierec_core import lake
from movierec_core.snapshot import create_snapshot
from tests.trainer.conftest import overrides
from trainer.cli import main
from trainer.data import TrainerInputError, events_from_tables
from trainer.synthetic import synthetic_tables, write_lake


def test_missing_lake_and_unknown_snapshot_fail_with_a_readable_line(synthetic_lake, tmp_path, capsys):
    assert main(overrides(tmp_path / "nolake", tmp_path)) == 2
    assert "no snapshots in" in capsys.readouterr().err
    lake_root, _ = synthetic_lake
    assert main(overrides(lake_root, tmp_path, "snapshot=20990101T000000-nope")) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainer: error: snapshot '20990101T000000-nope' not found")
    assert err.count("\n") == 1


def test_empty_snapshot_fails(tmp_path, capsys):
    root = tmp_path / "lake"
    root.mkdir()
    snap = create_snapshot(root)["snapshot_id"]
    assert main(overrides(root, tmp_path, f"snapshot={snap}")) == 2
    assert "no watch sessions and no ratings" in capsys.readouterr().err


def test_invalid_rows_are_dropped_and_counted_and_mostly_invalid_data_is_refused():
    t = synthetic_tables(n_users=20, n_movies=10, seed=1)
    r = t[lake.RATINGS].astype({"stars": float})
    r.loc[r.index[:3], "stars"] = [0, 7, float("nan")]
    events, q = events_from_tables({**t, lake.RATINGS: r}, scale_max=5)
    assert q["dropped_ratings_bad_stars"] == 3
    assert q["events"] == len(t[lake.WATCH_SESSIONS]) + len(r) - 3
    s = t[lake.WATCH_SESSIONS].copy()
    s["minutes_watched"] = -1
    with pytest.raises(TrainerInputError, match="invalid"):
        events_from_tables({lake.WATCH_SESSIONS: s, lake.RATINGS: r.iloc[:0]}, scale_max=5)


def test_users_and_movies_with_one_interaction_are_kept(tmp_path, capsys):
    t = synthetic_tables(n_users=60, n_movies=30, seed=2)
    s = t[lake.WATCH_SESSIONS]
    extra = s.iloc[[0]].assign(user_id=999_999, movie_id="lonely+movie+2001",
                               start=s["start"].min(), end=s["start"].min())
    t[lake.WATCH_SESSIONS] = pd.concat([s, extra], ignore_index=True)
    root = write_lake(tmp_path / "lake", t)
    create_snapshot(root)
    assert main(overrides(root, tmp_path, "trainer.candidates=[als,popularity]")) == 0
    from movierec_core.models import load_bundle
    from movierec_core.registry import FileRegistry

    b = load_bundle(FileRegistry(tmp_path / "registry").resolve("movierec", "champion"))
    assert b.user_row(999_999) is not None and b.item_index("lonely+movie+2001") is not None


def test_bad_override_and_unknown_command(tmp_path, capsys):
    assert main(["trainer.nope=1"]) == 2
    assert "bad configuration" in capsys.readouterr().err
    assert main(["frobnicate", f"data.registry_root={tmp_path}"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_no_warm_test_users_registers_the_first_candidate(synthetic_lake, tmp_path):
    lake_root, _ = synthetic_lake
    # a split time after every event: no test events, so no warm user to rank candidates on
    from trainer.cli import load_config
    from trainer.pipeline import run

    cfg = load_config(overrides(lake_root, tmp_path, "trainer.candidates=[popularity,als]",
                                "trainer.split_time=2099-01-01"))
    res = run(cfg)
    assert res.model_type == "popularity" and res.version == "v0001"
