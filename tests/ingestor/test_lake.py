"""Lake writer, compaction, sessions and snapshots (pure file I/O, no broker)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestor.lake import (
    LakeWriter,
    SeenKeys,
    _merge_sorted,
    maintain,
    rebuild_sessions,
    recover,
    sessionise,
)
from movierec_core.lake import SCHEMAS, USERS, WATCH_MINUTES, WATCH_SESSIONS, partition_dir
from movierec_core.snapshot import (
    SnapshotCorrupt,
    SnapshotNotFound,
    create_snapshot,
    data_files,
    list_snapshots,
    load_snapshot,
)

T0 = datetime(2025, 3, 2, 14, 0, 0)


def minutes_table(rows: list[tuple[int, datetime, int, str, int]]) -> pa.Table:
    ids, times, users, movies, minutes = zip(*rows, strict=True) if rows else ([],) * 5
    return pa.table({"event_id": ids, "time": times, "user_id": users, "movie_id": movies,
                     "minute": minutes}, schema=SCHEMAS[WATCH_MINUTES])


def read_all(root, table) -> pa.Table:
    files = sorted((root / table).rglob("*.parquet"))
    files = [f for f in files if not f.name.startswith(".")]
    return pa.concat_tables(pq.read_table(f).select(SCHEMAS[table].names) for f in files)


def test_line_ids_of_a_batch_equal_the_line_id_of_each_line() -> None:
    """The batch form keeps every event id of existing lakes (their dedupe key)."""
    import random

    from movierec_core.invalid import InvalidKind, make_invalid
    from movierec_core.lake import line_id, line_ids

    rng = random.Random(4)
    lines = [b"", b"2025-03-02T14:07:33,48211,GET /data/m/the+lion+king+1994/57.mpg",
             bytes(range(256)), *(make_invalid(kind, rng) for kind in InvalidKind)]
    lines += [rng.randbytes(rng.randrange(200)) for _ in range(500)]
    ids = line_ids(lines)
    assert ids.dtype == np.int64 and ids.tolist() == [line_id(line) for line in lines]
    assert line_id(lines[1]) == 7684079238906070742  # pinned: a changed hash breaks dedupe
    assert line_ids([]).tolist() == []


def test_seen_keys_finds_exactly_what_was_added() -> None:
    seen = SeenKeys()
    rng = np.random.default_rng(1)
    added = rng.integers(-(2**63), 2**63 - 1, 50_000, dtype=np.int64)
    for chunk in np.array_split(added, 37):
        seen.add(chunk)
    others = rng.integers(-(2**63), 2**63 - 1, 10_000, dtype=np.int64)
    assert seen.contains(added).all()
    assert not seen.contains(np.setdiff1d(others, added)).any()
    assert len(seen._runs) < 10
    assert len(seen) == np.unique(added).size  # every run sorted, no key in two of them
    assert all(bool(np.all(np.diff(run) > 0)) for run in seen._runs)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1)), st.lists(st.integers(-(2**63), 2**63 - 1)),
       st.lists(st.integers(-3, 3)))
def test_merging_two_runs_is_their_union(a: list[int], b: list[int], shared: list[int]) -> None:
    x = np.unique(np.array(a + shared, dtype=np.int64))
    y = np.unique(np.array(b + shared, dtype=np.int64))
    merged = _merge_sorted(x, y)
    assert merged.dtype == np.int64 and merged.tolist() == np.union1d(x, y).tolist()


def test_given_redelivered_rows_when_written_again_then_each_key_lands_once(tmp_path) -> None:
    rows = [(i, T0 + timedelta(minutes=i), 1, "m", i) for i in range(10)]
    writer = LakeWriter(tmp_path)
    assert writer.write_dated(WATCH_MINUTES, minutes_table(rows[:6] + rows[:2])).rows == 6
    # a new process (restart) knows nothing in memory: the files are the truth
    again = LakeWriter(tmp_path).write_dated(WATCH_MINUTES, minutes_table(rows))
    assert (again.rows, again.duplicates) == (4, 6)
    assert sorted(read_all(tmp_path, WATCH_MINUTES).column("event_id").to_pylist()) == list(range(10))


def test_rows_are_split_by_event_date(tmp_path) -> None:
    rows = [(1, datetime(2025, 3, 1, 23, 59), 1, "m", 1), (2, datetime(2025, 3, 2, 0, 1), 1, "m", 2)]
    LakeWriter(tmp_path).write_dated(WATCH_MINUTES, minutes_table(rows))
    for day, eid in ((date(2025, 3, 1), 1), (date(2025, 3, 2), 2)):
        files = data_files(partition_dir(tmp_path, WATCH_MINUTES, day))
        assert [pq.read_table(f).column("event_id").to_pylist() for f in files] == [[eid]]


def test_compaction_merges_files_and_keeps_rows(tmp_path) -> None:
    writer = LakeWriter(tmp_path)
    for i in range(10):
        writer.write_dated(WATCH_MINUTES, minutes_table([(i, T0, 1, "m", i)]))
    directory = partition_dir(tmp_path, WATCH_MINUTES, T0)
    assert len(data_files(directory)) == 10
    assert writer.compact(WATCH_MINUTES, T0.date(), min_files=8)
    assert len(data_files(directory)) == 1
    # the writer still dedupes against the compacted file
    assert writer.write_dated(WATCH_MINUTES, minutes_table([(3, T0, 1, "m", 3)])).rows == 0
    assert sorted(read_all(tmp_path, WATCH_MINUTES).column("event_id").to_pylist()) == list(range(10))


def test_interrupted_compaction_is_completed_not_duplicated(tmp_path) -> None:
    writer = LakeWriter(tmp_path)
    for i in range(3):
        writer.write_dated(WATCH_MINUTES, minutes_table([(i, T0, 1, "m", i)]))
    directory = partition_dir(tmp_path, WATCH_MINUTES, T0)
    inputs = data_files(directory)
    # simulate a crash after the compacted file appeared, before the inputs were deleted
    merged = pa.concat_tables(pq.read_table(p) for p in inputs)
    pq.write_table(merged, directory / "compacted-x.parquet")
    (directory / ".replace.json").write_text(json.dumps(
        {"output": "compacted-x.parquet", "inputs": [p.name for p in inputs]}))
    assert recover(tmp_path) == 1
    assert [p.name for p in data_files(directory)] == ["compacted-x.parquet"]


def test_sessionise_cuts_at_gaps_and_counts_distinct_minutes() -> None:
    rows = [(0, T0, 1, "a", 0), (1, T0 + timedelta(minutes=1), 1, "a", 1),
            (2, T0 + timedelta(minutes=2), 1, "a", 1),  # same minute again
            (3, T0 + timedelta(minutes=40), 1, "a", 7),  # after a 38 min gap: new session
            (4, T0 + timedelta(minutes=1), 2, "a", 5), (5, T0, 1, "b", 3)]
    sessions = sessionise(minutes_table(rows), gap_s=600).to_pylist()
    assert sessions == [
        {"user_id": 1, "movie_id": "a", "start": T0, "end": T0 + timedelta(minutes=2),
         "minutes_watched": 2, "max_minute": 1},
        {"user_id": 1, "movie_id": "a", "start": T0 + timedelta(minutes=40),
         "end": T0 + timedelta(minutes=40), "minutes_watched": 1, "max_minute": 7},
        {"user_id": 1, "movie_id": "b", "start": T0, "end": T0, "minutes_watched": 1,
         "max_minute": 3},
        {"user_id": 2, "movie_id": "a", "start": T0 + timedelta(minutes=1),
         "end": T0 + timedelta(minutes=1), "minutes_watched": 1, "max_minute": 5},
    ]


def test_maintain_compacts_and_rebuilds_sessions_once(tmp_path) -> None:
    writer = LakeWriter(tmp_path)
    for i in range(9):
        writer.write_dated(WATCH_MINUTES, minutes_table([(i, T0 + timedelta(minutes=i), 1, "m", i)]))
    assert maintain(tmp_path, gap_s=600) == {"compacted": 1, "sessions_rebuilt": 1}
    assert maintain(tmp_path, gap_s=600) == {"compacted": 0, "sessions_rebuilt": 0}
    assert read_all(tmp_path, WATCH_SESSIONS).column("minutes_watched").to_pylist() == [9]
    assert rebuild_sessions(tmp_path, T0.date(), gap_s=60) == 1


def test_snapshot_is_immutable_and_verified(tmp_path) -> None:
    writer = LakeWriter(tmp_path)
    writer.write_dated(WATCH_MINUTES, minutes_table([(1, T0, 1, "m", 1), (2, T0, 2, "m", 2)]))
    writer.write_dated(WATCH_MINUTES, minutes_table([(3, T0 + timedelta(days=1), 1, "m", 1)]))
    users = pa.table({"user_id": [1], "age": [30], "gender": ["F"], "occupation": ["x"],
                      "fetched_at": [T0]}, schema=SCHEMAS[USERS])
    writer.write(USERS, None, users)
    maintain(tmp_path, gap_s=600)
    manifest = create_snapshot(tmp_path, start="2025-03-02", end=date(2025, 3, 2))
    assert manifest["time_range"] == {"start": "2025-03-02", "end": "2025-03-02"}
    assert set(manifest) == {"snapshot_id", "created_at", "time_range", "files", "content_hash",
                             "pseudonym_key_id"}
    assert manifest["pseudonym_key_id"] is None  # raw ids: no key configured
    assert {f["table"] for f in manifest["files"]} == {WATCH_MINUTES, WATCH_SESSIONS, USERS}
    assert list_snapshots(tmp_path) == [manifest["snapshot_id"]]
    # the lake moves on (more rows, compaction): the snapshot does not
    for i in range(10, 20):
        writer.write_dated(WATCH_MINUTES, minutes_table([(i, T0, 1, "m", i)]))
    maintain(tmp_path, gap_s=600)
    tables = load_snapshot(tmp_path, manifest["snapshot_id"])
    assert sorted(tables[WATCH_MINUTES].column("event_id").to_pylist()) == [1, 2]
    assert tables[USERS].num_rows == 1
    assert tables["ratings"].num_rows == 0 and tables["ratings"].schema == SCHEMAS["ratings"]
    # a tampered file is detected, a missing snapshot is named
    victim = tmp_path / manifest["files"][0]["path"]
    victim.chmod(0o644)
    with open(victim, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(SnapshotCorrupt, match="sha256"):
        load_snapshot(tmp_path, manifest["snapshot_id"])
    with pytest.raises(SnapshotNotFound, match="nope"):
        load_snapshot(tmp_path, "nope")


def test_parquet_files_dictionary_encode_every_column_but_the_line_hash(tmp_path) -> None:
    from movierec_core.lake import RECOMMENDATION_REQUESTS, SCHEMAS

    schema = SCHEMAS[RECOMMENDATION_REQUESTS]
    data = pa.table({
        "event_id": [1, 2], "time": [datetime(2025, 3, 2), datetime(2025, 3, 2, 1)],
        "user_id": [5, 6], "server": ["s", "s"], "status": [200, 200],
        "movie_ids": [["a", "b"], ["a"]], "error": ["", ""], "response_ms": [3, 4],
        "line": ["x", "y"]}, schema=schema)
    result = LakeWriter(tmp_path).write(RECOMMENDATION_REQUESTS, date(2025, 3, 2), data)
    meta = pq.ParquetFile(result.path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings
                 for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" not in encodings.pop("event_id")
    assert set(encodings) == {"time", "user_id", "server", "status", "movie_ids.list.element",
                              "error", "response_ms", "line"}
    assert all("RLE_DICTIONARY" in e for e in encodings.values()), encodings


def test_snapshots_of_one_second_are_listed_by_creation_time(tmp_path) -> None:
    """Ids name the second and a content hash: within a second the manifest's creation time
    orders them (retention keeps the newest)."""
    from movierec_core.snapshot import SNAPSHOTS_DIR, list_snapshots

    directory = tmp_path / SNAPSHOTS_DIR
    directory.mkdir(parents=True)
    for name, created in (("20260101T000000-ffff", "2026-01-01T00:00:00.100000"),
                          ("20260101T000000-0000", "2026-01-01T00:00:00.900000"),
                          ("20251231T235959-aaaa", "2025-12-31T23:59:59.999999"),
                          ("20260101T000001-0001", "2026-01-01T00:00:01.000001")):
        (directory / f"{name}.json").write_text(json.dumps({"created_at": created}))
    assert list_snapshots(tmp_path) == ["20251231T235959-aaaa", "20260101T000000-ffff",
                                        "20260101T000000-0000", "20260101T000001-0001"]
