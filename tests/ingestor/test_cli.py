"""The entry point: Hydra composition, `compact` and `snapshot` subcommands."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pyarrow as pa

from ingestor.__main__ import main
from ingestor.config import register_configs
from ingestor.lake import LakeWriter
from movierec_core.config import compose
from movierec_core.lake import SCHEMAS, WATCH_MINUTES
from movierec_core.snapshot import load_snapshot

T0 = datetime(2025, 3, 2, 14, 0)


def test_config_composes_with_overrides() -> None:
    register_configs()
    cfg = compose("ingestor", ["kafka.bootstrap=127.0.0.1:1234", "ingestor.session_gap_s=60"])
    assert cfg.kafka.bootstrap == "127.0.0.1:1234"
    assert cfg.ingestor.session_gap_s == 60
    assert cfg.ingestor.metrics_port == 9101 and cfg.data.online_store_backend == "sqlite"
    assert cfg.metadata_api.bulk_size == 200


def test_snapshot_command_prints_a_loadable_manifest(tmp_path, capsys) -> None:
    rows = [(i, T0 + timedelta(minutes=i), 1, "m", i) for i in range(5)]
    data = pa.table(dict(zip(SCHEMAS[WATCH_MINUTES].names, zip(*rows, strict=True), strict=True)),
                    schema=SCHEMAS[WATCH_MINUTES])
    LakeWriter(tmp_path).write_dated(WATCH_MINUTES, data)
    assert main(["compact", f"data.lake_root={tmp_path}"]) == 0
    assert json.loads(capsys.readouterr().out) == {"compacted": 0, "sessions_rebuilt": 1}
    assert main(["snapshot", "--start", "2025-03-02", f"data.lake_root={tmp_path}"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    tables = load_snapshot(tmp_path, manifest["snapshot_id"])
    assert tables[WATCH_MINUTES].num_rows == 5
    assert tables["watch_sessions"].column("minutes_watched").to_pylist() == [5]


def test_snapshot_summary_stays_small_as_the_lake_grows(tmp_path, capsys) -> None:
    """A pipeline step's output (Argo's outputs.result) is the summary: id and counts; the
    manifest, one entry per file, stays in the lake."""
    for day in range(3):
        rows = [(i, T0 + timedelta(days=day, minutes=i), 1, "m", i) for i in range(4)]
        data = pa.table(dict(zip(SCHEMAS[WATCH_MINUTES].names, zip(*rows, strict=True),
                                 strict=True)), schema=SCHEMAS[WATCH_MINUTES])
        LakeWriter(tmp_path).write_dated(WATCH_MINUTES, data)
    assert main(["snapshot", "--summary", f"data.lake_root={tmp_path}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"snapshot_id", "files", "rows", "content_hash"}
    assert summary["rows"] == 12 + 3 and summary["files"] >= 4  # watch minutes + sessions
    assert load_snapshot(tmp_path, summary["snapshot_id"])[WATCH_MINUTES].num_rows == 12
    assert len(json.dumps(summary)) < 200


def test_sigterm_while_starting_exits_zero(tmp_path) -> None:
    """A supervisor may stop the ingestor right after (re)starting it: still a clean exit 0."""
    import signal
    import subprocess
    import sys
    import time

    from devstack.ports import free_port

    proc = subprocess.Popen(
        [sys.executable, "-m", "ingestor", f"kafka.bootstrap=127.0.0.1:{free_port()}",
         f"data.lake_root={tmp_path / 'lake'}", f"data.online_store_path={tmp_path / 'o.sqlite'}",
         "ingestor.metrics_port=0", "ingestor.enrichment=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # still importing
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
