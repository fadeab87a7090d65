"""Retention (issue 21): old raw partitions, old online-store interactions, snapshots and
registry versions beyond what is kept are deleted; the champion, its lineage and the snapshots
kept models were trained on stay."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from ingestor.lake import LakeWriter, partitions
from ingestor.retention import RetentionPolicy, apply_retention
from movierec_core.lake import WATCH_MINUTES
from movierec_core.models.testing import tiny_bundle
from movierec_core.online_store import SqliteOnlineStore
from movierec_core.registry import FileRegistry
from movierec_core.snapshot import create_snapshot, list_snapshots
from tests.ingestor.test_erasure import KEPT, REPO, T0, ingest, lines_of


def test_retention_keeps_what_it_must_and_deletes_the_rest(tmp_path: Path) -> None:
    lake_root = tmp_path / "lake"
    lake, store = LakeWriter(lake_root), SqliteOnlineStore(tmp_path / "online.sqlite")
    snapshots = []
    for day in (0, 10, 40):  # three days of events, a snapshot after each
        ingest(lake, store, lines_of(KEPT + day, day))
        snapshots.append(create_snapshot(lake_root)["snapshot_id"])
    registry = FileRegistry(tmp_path / "registry")
    bundle = tiny_bundle(tmp_path / "bundle")
    for i, snapshot in enumerate([snapshots[0], snapshots[0], snapshots[1], snapshots[1]]):
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["snapshot"] = {"id": snapshot, "hash": None}
        (bundle / "manifest.json").write_text(json.dumps(manifest))
        version = registry.register("movierec", bundle)
        registry.promote("movierec", version)  # v0001 .. v0004 champions in turn
        assert version == f"v000{i + 1}"

    policy = RetentionPolicy(raw_days=30, online_store_days=30, snapshots_keep=1,
                             registry_keep=1, champion_lineage_keep=1)
    report = apply_retention(policy, lake_root, store, tmp_path / "registry",
                             now=T0 + timedelta(days=45, hours=1))
    # events of days 0 and 10 are older than 30 days at day 45; day 40 stays
    assert partitions(lake_root, WATCH_MINUTES) == [(T0 + timedelta(days=40)).date()]
    assert sorted(report.partitions_deleted) == sorted(
        f"{t}/{(T0 + timedelta(days=d)).date()}" for d in (0, 10)
        for t in ("watch_minutes", "ratings", "account_creations", "recommendation_requests"))
    assert report.online_store_interactions == 2  # the two old users' one movie each
    assert store.interactions(KEPT) == [] and len(store.interactions(KEPT + 40)) == 1
    # the champion (v0004, newest) and one step of its lineage (v0003) stay
    assert [v.version for v in registry.versions("movierec")] == ["v0003", "v0004"]
    assert report.versions_deleted == ["movierec/v0001", "movierec/v0002"]
    # snapshots: the newest, and the one v0003/v0004 were trained on
    assert list_snapshots(lake_root) == [snapshots[1], snapshots[2]]
    assert report.snapshots_deleted == [snapshots[0]]
    assert registry.rollback("movierec") == "v0003"  # the lineage still rolls back
    store.close()


def test_retention_off_by_default_deletes_nothing(tmp_path: Path) -> None:
    lake_root = tmp_path / "lake"
    lake, store = LakeWriter(lake_root), SqliteOnlineStore(tmp_path / "online.sqlite")
    ingest(lake, store, lines_of(KEPT, 0))
    create_snapshot(lake_root)
    store.close()
    assert not RetentionPolicy().active
    out = subprocess.run([sys.executable, "-m", "ingestor", "retention",
                          f"data.lake_root={lake_root}",
                          f"data.online_store_path={tmp_path / 'online.sqlite'}",
                          f"data.registry_root={tmp_path / 'registry'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "partitions_deleted": [], "online_store_interactions": 0, "versions_deleted": [],
        "snapshots_deleted": []}
    assert len(list_snapshots(lake_root)) == 1
