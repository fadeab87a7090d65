"""Erasure end to end (issue 21): after ``python -m ingestor erase``, nothing of the user is left
in the lake (raw events, sessions, the users table), the online store, the snapshots; the models
trained on them are marked; the serving path answers them without personalisation; late events
of theirs are dropped by the ingestor; everybody else's data is untouched."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ingestor.lake import LakeWriter, maintain
from ingestor.pipeline import parse_batch
from model_server.engine import Engine
from model_server.service import Recommendations
from movierec_core.erasure import ErasedUsers, drop_erased, read_ledger
from movierec_core.events import (
    DEFAULT_SETTINGS,
    account_line,
    rating_line,
    recommendation_line,
    watch_line,
)
from movierec_core.lake import SCHEMAS, USERS, WATCH_MINUTES
from movierec_core.models.testing import tiny_bundle
from movierec_core.online_store import SqliteOnlineStore
from movierec_core.registry import FileRegistry
from movierec_core.snapshot import create_snapshot, list_snapshots

REPO = Path(__file__).resolve().parents[2]
ERASED, KEPT = 1010, 1020  # rows 1 and 2 of the tiny bundle
T0 = datetime(2025, 3, 2, 12, 0)


def lines_of(user: int, day_offset: int = 0) -> list[bytes]:
    t = T0 + timedelta(days=day_offset)
    text = t.isoformat()
    out = [account_line(text, user), rating_line(text, user, "movie+3+2000", 4),
           recommendation_line(text, user, "router:8082", 200,
                               [f"movie+{i}+2000" for i in range(5)], "", 12)]
    out += [watch_line((t + timedelta(minutes=m)).isoformat(), user, "movie+3+2000", m)
            for m in range(30)]
    return [x.encode() for x in out]


def ingest(lake: LakeWriter, store: SqliteOnlineStore, lines: list[bytes]) -> None:
    n = len(lines)
    parsed = parse_batch(lines, [0] * n, list(range(n)), [0] * n, DEFAULT_SETTINGS)
    assert not parsed.rejected
    for name, table in parsed.tables.items():
        lake.write_dated(name, table)
    store.apply_tables(parsed.tables.get(WATCH_MINUTES), parsed.events)


def rows_of(root: Path, user: int) -> dict[str, int]:
    """Rows of ``user`` in every Parquet file under ``root`` (lake and snapshots)."""
    found: dict[str, int] = {}
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path)
        if "user_id" in table.column_names:
            n = int(pc.sum(pc.equal(table.column("user_id"), user)).as_py() or 0)
            if n:
                found[str(path.relative_to(root))] = n
    return found


@pytest.fixture
def platform(tmp_path: Path) -> dict:
    lake_root, store_path = tmp_path / "lake", tmp_path / "online.sqlite"
    lake, store = LakeWriter(lake_root), SqliteOnlineStore(store_path)
    for day in (0, 1):
        ingest(lake, store, lines_of(ERASED, day) + lines_of(KEPT, day))
    users = pa.table({"user_id": [ERASED, KEPT], "age": [31, 45], "gender": ["F", "M"],
                      "occupation": ["writer", "scientist"],
                      "fetched_at": [T0, T0]}, schema=SCHEMAS[USERS])
    lake.write(USERS, None, users)
    maintain(lake_root, 1800.0)  # watch sessions of both users
    snapshot = create_snapshot(lake_root)
    bundle = tiny_bundle(tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["snapshot"] = {"id": snapshot["snapshot_id"], "hash": snapshot["content_hash"]}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    registry = FileRegistry(tmp_path / "registry")
    registry.register("movierec", bundle, aliases=("champion",))
    store.close()
    return {"lake": lake_root, "store": store_path, "registry": tmp_path / "registry",
            "snapshot": snapshot["snapshot_id"], "bundle": registry.resolve("movierec", "v0001")}


def test_nothing_of_an_erased_user_remains(platform: dict) -> None:
    lake_root = platform["lake"]
    before_kept = rows_of(lake_root, KEPT)
    before = rows_of(lake_root, ERASED)
    assert any(p.startswith("_snapshots/") for p in before)  # the snapshot holds them
    tables = {p.split("/")[0] for p in before if not p.startswith("_")}
    assert tables == {"watch_minutes", "ratings", "account_creations",
                      "recommendation_requests", "watch_sessions", "users"}

    out = subprocess.run(
        [sys.executable, "-m", "ingestor", "erase", str(ERASED),
         f"data.lake_root={lake_root}", f"data.online_store_path={platform['store']}",
         f"data.registry_root={platform['registry']}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["users"] == [ERASED]
    assert report["lake_rows"] == {"watch_minutes": 60, "ratings": 2, "account_creations": 2,
                                   "recommendation_requests": 2, "watch_sessions": 2,
                                   "users": 1}
    assert report["online_store_interactions"] == 1
    assert report["snapshots_expired"] == [platform["snapshot"]]
    assert report["versions_marked"] == ["movierec/v0001"]

    assert rows_of(lake_root, ERASED) == {}  # lake and snapshots
    kept_after = rows_of(lake_root, KEPT)
    assert sum(kept_after.values()) == sum(n for p, n in before_kept.items()
                                           if not p.startswith("_snapshots/"))
    assert list_snapshots(lake_root) == []
    store = SqliteOnlineStore(platform["store"])
    assert store.interactions(ERASED) == [] and store.account_created_at(ERASED) is None
    assert len(store.interactions(KEPT)) == 1 and store.account_created_at(KEPT) is not None
    assert store.erased_users() == {ERASED}
    store.close()
    assert read_ledger(lake_root) == {ERASED}
    marker = json.loads((platform["bundle"] / "erasure.json").read_text())
    assert marker["retrain_required"] and marker["events"][0]["erased_users"] == 1
    # running it again changes nothing and fails nothing (an interrupted erasure is re-run)
    again = subprocess.run(
        [sys.executable, "-m", "ingestor", "erase", str(ERASED),
         f"data.lake_root={lake_root}", f"data.online_store_path={platform['store']}",
         f"data.registry_root={platform['registry']}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])[
        "lake_rows"] == {}


def test_serving_stops_personalising_for_an_erased_user_within_a_second(
        platform: dict) -> None:
    engine = Engine.load(platform["bundle"])

    class Holder:
        current = engine

    service = Recommendations(Holder(), store_factory=lambda: SqliteOnlineStore(platform["store"]),
                              demographics=None, deadline_ms=1000, cost_lambda=0.0,
                              fold_in=True, history_limit=500, threads=0, erased_poll_s=0.1)
    try:
        assert asyncio.run(service.recommend(ERASED, 10)).source in ("model", "fold_in")
        store = SqliteOnlineStore(platform["store"])
        store.erase([ERASED])
        store.close()
        deadline = time.monotonic() + 1.0
        while ERASED not in service.erased and time.monotonic() < deadline:
            time.sleep(0.02)
        answer = asyncio.run(service.recommend(ERASED, 10))
        assert answer.source == "popularity" and answer.items == engine.popular_answer(10).items
        assert asyncio.run(service.recommend(KEPT, 10)).source in ("model", "fold_in")
    finally:
        service.close()


def test_late_events_of_erased_users_are_dropped_before_any_write(tmp_path: Path) -> None:
    lines = lines_of(ERASED) + lines_of(KEPT)
    n = len(lines)
    parsed = parse_batch(lines, [0] * n, list(range(n)), [0] * n, DEFAULT_SETTINGS)
    ledger = ErasedUsers(tmp_path)
    assert ledger.current() == frozenset()
    from movierec_core.erasure import record

    record(tmp_path, [ERASED], "test")
    erased = ledger.current()
    assert erased == {ERASED}
    for name, table in parsed.tables.items():
        kept = drop_erased(table, erased)
        assert set(kept.column("user_id").to_pylist()) == {KEPT}, name
        assert kept.num_rows == table.num_rows // 2, name


def test_erase_refuses_ids_that_are_not_integers(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "ingestor", "erase", "12x",
                          f"data.lake_root={tmp_path}"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "user ids must be non-negative integers" in out.stderr


@pytest.mark.parametrize("bound", ["batch_max_bytes=0", "batch_max_records=-1",
                                   "batch_max_wait_s=0"])
def test_run_refuses_batch_bounds_that_never_let_a_poll_happen(tmp_path: Path, bound) -> None:
    out = subprocess.run([sys.executable, "-m", "ingestor", f"ingestor.{bound}",
                          f"data.lake_root={tmp_path}", "kafka.bootstrap=127.0.0.1:1"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "batch bounds must be positive" in out.stderr, out.stderr
    assert f"ingestor.{bound}" in out.stderr
