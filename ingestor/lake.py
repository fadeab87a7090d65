"""The lake writer: Parquet files per table and event date, each key written once, across restarts.

Layout and schemas are ``movierec_core.lake``'s. Every write to a partition directory happens
under that directory's lock (:func:`movierec_core.snapshot.partition_lock`) and goes

1. refresh the partition's seen keys from files not read yet (other instances, earlier runs),
2. drop rows whose key is already there or repeats inside the batch,
3. write ``.tmp-*.parquet``, fsync, rename to ``part-*.parquet``, fsync the directory.

So a crash leaves either the whole file or nothing visible, and a redelivered batch adds nothing:
the exactly-once effect rests on the key (``event_id = line_id(raw line)``), not on offsets.
Files are never modified in place. Compaction and session rebuilds replace files through a
journal (``.replace.json``: output + inputs) that the next lock holder completes after a crash.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from movierec_core.lake import (
    MOVIES,
    SCHEMAS,
    USERS,
    WATCH_MINUTES,
    WATCH_SESSIONS,
    line_id,
    partition_dir,
    table_dir,
)
from movierec_core.snapshot import DATED_TABLES, data_files, partition_lock

log = logging.getLogger(__name__)

JOURNAL = ".replace.json"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SeenKeys:
    """A set of int64 keys as a few sorted numpy runs (log-structured merge): ~8 bytes a key."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for run in self._runs:
            if len(run) == 0:
                continue
            pos = np.searchsorted(run, keys)
            pos[pos == len(run)] = len(run) - 1
            found |= run[pos] == keys
        return found

    def add(self, keys: np.ndarray) -> None:
        self.add_sorted(np.unique(np.asarray(keys, dtype=np.int64)))

    def add_sorted(self, keys: np.ndarray) -> None:
        """Add int64 keys that are sorted and distinct already (no sort of them again)."""
        if len(keys) == 0:
            return
        self._runs.append(keys)
        # merge while the newest run is at least half the size of the one before (amortised log n)
        while len(self._runs) > 1 and len(self._runs[-1]) * 2 >= len(self._runs[-2]):
            last = self._runs.pop()
            self._runs[-1] = _merge_sorted(self._runs[-1], last)


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The union of two sorted, duplicate-free arrays, sorted: ``np.union1d`` without its full
    sort (numpy's stable sort of int64 is a timsort, which merges the two runs it finds in
    linear time: 8 ms instead of 90 ms for 1M + 100K keys)."""
    merged = np.concatenate((a, b))
    merged.sort(kind="stable")
    keep = np.empty(merged.size, dtype=bool)
    keep[:1] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]


def key_column(table_name: str) -> str:
    return {USERS: "user_id", MOVIES: "movie_id"}.get(table_name, "event_id")


def keys_of(table_name: str, data: pa.Table) -> np.ndarray:
    """The dedupe keys of ``data`` as int64: ``event_id``, ``user_id``, or a hash of ``movie_id``."""
    column = data.column(key_column(table_name))
    if table_name == MOVIES:
        return np.fromiter((line_id(m.encode()) for m in column.to_pylist()), dtype=np.int64,
                           count=len(column))
    if table_name == WATCH_SESSIONS:
        raise ValueError("watch_sessions are rebuilt, not appended")
    return column.to_numpy().astype(np.int64, copy=False)


@dataclass
class WriteResult:
    rows: int = 0
    duplicates: int = 0
    bytes: int = 0
    path: Path | None = None


def _finish_journal(directory: Path) -> None:
    """Complete (or roll back) a replacement interrupted by a crash."""
    journal = directory / JOURNAL
    if not journal.exists():
        return
    try:
        spec = json.loads(journal.read_text())
    except ValueError:
        spec = None
    if spec and (directory / spec["output"]).exists():
        for name in spec["inputs"]:
            (directory / name).unlink(missing_ok=True)
        log.warning("completed an interrupted file replacement in %s", directory)
    journal.unlink(missing_ok=True)
    for tmp in directory.glob(".tmp-*.parquet"):
        tmp.unlink(missing_ok=True)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The Parquet column paths to dictionary-encode: every column but ``event_id``, a line
    hash that never repeats, so a dictionary only costs (measured: a batch of watch minutes
    written in 6.5 instead of 10 ms, 15 % smaller); a list's values are ``<name>.list.element``."""
    return [f"{f.name}.list.element" if pa.types.is_list(f.type) else f.name
            for f in schema if f.name != "event_id"]


def _write_parquet(data: pa.Table, directory: Path, prefix: str) -> tuple[Path, int]:
    """Write ``data`` durably as a new visible file; returns (path, bytes)."""
    token = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = directory / f".tmp-{token}.parquet"
    final = directory / f"{prefix}-{token}.parquet"
    pq.write_table(data, tmp, compression="zstd", row_group_size=256 * 1024,
                   use_dictionary=_dictionary_columns(data.schema))
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.rename(tmp, final)
    _fsync_dir(directory)
    return final, final.stat().st_size


def replace_files(directory: Path, data: pa.Table | Callable[[Path], None],
                  inputs: Iterable[Path], prefix: str) -> Path:
    """Atomically (journalled) replace ``inputs`` with one file holding ``data`` (a table, or
    a function that writes the new file at the path it is given).

    Call with the directory's lock held."""
    inputs = [Path(p).name for p in inputs]
    token = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = directory / f".tmp-{token}.parquet"
    output = f"{prefix}-{token}.parquet"
    if callable(data):
        data(tmp)
    else:
        pq.write_table(data, tmp, compression="zstd", row_group_size=256 * 1024,
                       use_dictionary=_dictionary_columns(data.schema))
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    journal_tmp = directory / f".tmp-{token}.json"
    journal_tmp.write_text(json.dumps({"output": output, "inputs": inputs}))
    os.rename(journal_tmp, directory / JOURNAL)
    _fsync_dir(directory)
    os.rename(tmp, directory / output)
    _fsync_dir(directory)
    for name in inputs:
        (directory / name).unlink(missing_ok=True)
    (directory / JOURNAL).unlink(missing_ok=True)
    _fsync_dir(directory)
    return directory / output


def rewrite_file(directory: Path, path: Path, schema: pa.Schema,
                 transform: Callable[[pa.Table], pa.Table], prefix: str) -> tuple[int, int, Path]:
    """Replace one file by ``transform`` applied to it batch by batch (memory bounded by a
    batch, not by the file: a compacted day of a large lake is one big file), journalled like
    :func:`replace_files`. Returns (rows read, rows written, the new file). Call with the
    lock held."""
    counts = [0, 0]

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema, compression="zstd",
                              use_dictionary=_dictionary_columns(schema)) as writer:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=256 * 1024):
                table = pa.Table.from_batches([batch]).cast(schema)
                out = transform(table)
                counts[0] += table.num_rows
                counts[1] += out.num_rows
                if out.num_rows:
                    writer.write_table(out)

    output = replace_files(directory, write, [path], prefix)
    return counts[0], counts[1], output


class LakeWriter:
    """Appends deduplicated Parquet files to the lake; safe across processes and restarts."""

    def __init__(self, lake_root: Path | str, max_cached_partitions: int = 64) -> None:
        self.root = Path(lake_root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_cached_partitions = max_cached_partitions
        # directory -> (file names whose keys are in the SeenKeys, SeenKeys)
        self._seen: OrderedDict[Path, tuple[set[str], SeenKeys]] = OrderedDict()

    def directory(self, table_name: str, day: date | None) -> Path:
        if table_name in DATED_TABLES:
            if day is None:
                raise ValueError(f"{table_name} is partitioned by event date")
            return partition_dir(self.root, table_name, day)
        return table_dir(self.root, table_name)

    def _refresh(self, table_name: str, directory: Path) -> SeenKeys:
        known, seen = self._seen.pop(directory, (set(), SeenKeys()))
        self._seen[directory] = (known, seen)  # most recently used last
        present = {p.name: p for p in data_files(directory)}
        for name, path in present.items():
            if name not in known:
                column = key_column(table_name)
                seen.add(keys_of(table_name, pq.ParquetFile(path).read(columns=[column])))
                known.add(name)
        known.intersection_update(present)
        while len(self._seen) > self.max_cached_partitions:
            self._seen.popitem(last=False)
        return seen

    def write(self, table_name: str, day: date | None, data: pa.Table) -> WriteResult:
        """Append the rows of ``data`` whose key the partition does not hold yet."""
        if data.num_rows == 0:
            return WriteResult()
        directory = self.directory(table_name, day)
        with partition_lock(directory):
            _finish_journal(directory)
            seen = self._refresh(table_name, directory)
            keys = keys_of(table_name, data)
            # each key's first row, looked up in key order (sorted needles: the runs are read
            # front to back instead of at random)
            order = np.argsort(keys, kind="stable")
            ordered = keys[order]
            first = np.ones(len(keys), dtype=bool)
            first[1:] = ordered[1:] != ordered[:-1]
            distinct = ordered[first]
            new = ~seen.contains(distinct)
            fresh_keys = distinct[new]  # sorted and distinct: the partition's next run
            keep = np.zeros(len(keys), dtype=bool)  # the rows written, in line order
            keep[order[first][new]] = True
            duplicates = data.num_rows - len(fresh_keys)
            if len(fresh_keys) == 0:
                return WriteResult(0, duplicates, 0)
            if len(fresh_keys) < data.num_rows:
                data = data.filter(pa.array(keep))
            path, size = _write_parquet(data.cast(SCHEMAS[table_name]), directory, "part")
            seen.add_sorted(fresh_keys)
            self._seen[directory][0].add(path.name)
            return WriteResult(len(fresh_keys), duplicates, size, path)

    def write_dated(self, table_name: str, data: pa.Table) -> WriteResult:
        """Split ``data`` by the date of its ``time`` column and write each partition."""
        total = WriteResult()
        if data.num_rows == 0:
            return total
        days = pc.cast(data.column("time"), pa.date32())
        unique_days = pc.unique(days).to_pylist()
        for day in sorted(unique_days):
            part = data if len(unique_days) == 1 else data.filter(pc.equal(days, day))
            result = self.write(table_name, day, part)
            total.rows += result.rows
            total.duplicates += result.duplicates
            total.bytes += result.bytes
        return total

    def compact(self, table_name: str, day: date | None, min_files: int = 8) -> bool:
        """Merge a partition's files into one when it has at least ``min_files``."""
        directory = self.directory(table_name, day)
        if not directory.is_dir():
            return False
        with partition_lock(directory):
            _finish_journal(directory)
            files = data_files(directory)
            if len(files) < max(min_files, 2):
                return False
            data = pa.concat_tables(pq.ParquetFile(p).read().cast(SCHEMAS[table_name]) for p in files)
            if table_name != WATCH_SESSIONS:
                _, first = np.unique(keys_of(table_name, data), return_index=True)
                first.sort()
                if len(first) < data.num_rows:
                    data = data.take(pa.array(first))
                if "time" in data.column_names:
                    data = data.sort_by([("time", "ascending")])
            replace_files(directory, data, files, "compacted")
            return True


def partitions(lake_root: Path | str, table_name: str) -> list[date]:
    root = table_dir(lake_root, table_name)
    if not root.is_dir():
        return []
    days = []
    for part in root.iterdir():
        if part.is_dir() and part.name.startswith("event_date="):
            try:
                days.append(date.fromisoformat(part.name.split("=", 1)[1]))
            except ValueError:
                continue
    return sorted(days)


def recover(lake_root: Path | str) -> int:
    """Finish journals and remove temporary files left by crashed writers; returns dirs fixed."""
    fixed = 0
    root = Path(lake_root)
    for journal in root.glob(f"*/*/{JOURNAL}"):
        with partition_lock(journal.parent):
            _finish_journal(journal.parent)
            fixed += 1
    for journal in root.glob(f"*/{JOURNAL}"):
        with partition_lock(journal.parent):
            _finish_journal(journal.parent)
            fixed += 1
    return fixed


# ---------------------------------------------------------------------------------------------
# Watch sessions (derived)

def sessionise(minutes: pa.Table, gap_s: float) -> pa.Table:
    """Watch minutes -> sessions: per (user, movie), a new session after a gap > ``gap_s``.

    ``minutes_watched`` counts distinct minutes in the session; ``end`` is its last event time.
    Pure function of its input (order-independent)."""
    schema = SCHEMAS[WATCH_SESSIONS]
    if minutes.num_rows == 0:
        return schema.empty_table()
    data = minutes.select(["user_id", "movie_id", "time", "minute"]).sort_by(
        [("user_id", "ascending"), ("movie_id", "ascending"), ("time", "ascending")])
    users = data.column("user_id").to_numpy()
    movie_codes = pc.dictionary_encode(data.column("movie_id")).combine_chunks()
    movies = movie_codes.indices.to_numpy()
    times = data.column("time").cast(pa.int64()).to_numpy()
    minute = data.column("minute").to_numpy().astype(np.int64)
    gap_us = int(gap_s * 1_000_000)
    new = np.ones(len(users), dtype=bool)
    new[1:] = (users[1:] != users[:-1]) | (movies[1:] != movies[:-1]) | (
        (times[1:] - times[:-1]) > gap_us)
    session = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(users)) - 1
    # distinct minutes per session: unique (session, minute) pairs, counted per session
    pairs = np.unique(session * (1 << 32) + (minute & 0xFFFFFFFF))
    distinct = np.bincount(pairs >> 32, minlength=len(starts))
    max_minute = np.maximum.reduceat(minute, starts)
    return pa.table({
        "user_id": pa.array(users[starts], pa.int64()),
        "movie_id": data.column("movie_id").take(pa.array(starts)).combine_chunks(),
        "start": pa.array(times[starts]).cast(pa.timestamp("us")),
        "end": pa.array(times[ends]).cast(pa.timestamp("us")),
        "minutes_watched": pa.array(distinct.astype(np.int32)),
        "max_minute": pa.array(max_minute.astype(np.int32)),
    }).cast(schema)


def sessions_stale(lake_root: Path | str, day: date) -> bool:
    minutes = data_files(partition_dir(lake_root, WATCH_MINUTES, day))
    sessions = data_files(partition_dir(lake_root, WATCH_SESSIONS, day))
    if not minutes:
        return False
    if not sessions:
        return True
    return max(p.stat().st_mtime_ns for p in minutes) > min(p.stat().st_mtime_ns for p in sessions)


def rebuild_sessions(lake_root: Path | str, day: date, gap_s: float) -> int:
    """Recompute ``watch_sessions`` of ``day`` from its watch minutes; returns the session count.

    Sessions are cut at midnight (each day partition is sessionised on its own)."""
    minutes_dir = partition_dir(lake_root, WATCH_MINUTES, day)
    with partition_lock(minutes_dir):
        _finish_journal(minutes_dir)
        files = data_files(minutes_dir)
        minutes = (pa.concat_tables(pq.ParquetFile(p).read(
                       columns=["user_id", "movie_id", "time", "minute"]) for p in files)
                   if files else SCHEMAS[WATCH_MINUTES].empty_table())
    sessions = sessionise(minutes, gap_s)
    directory = partition_dir(lake_root, WATCH_SESSIONS, day)
    with partition_lock(directory):
        _finish_journal(directory)
        replace_files(directory, sessions, data_files(directory), "sessions")
    return sessions.num_rows


def maintain(lake_root: Path | str, gap_s: float, min_files: int = 8,
             days: Iterable[date] | None = None,
             on_compact: Callable[[str, date], None] | None = None) -> dict[str, int]:
    """Compact small files and rebuild stale watch sessions (all days, or ``days``)."""
    writer = LakeWriter(lake_root, max_cached_partitions=1)
    compacted = rebuilt = 0
    wanted = set(days) if days is not None else None
    for table_name in DATED_TABLES:
        if table_name == WATCH_SESSIONS:
            continue
        for day in partitions(lake_root, table_name):
            if wanted is not None and day not in wanted:
                continue
            if writer.compact(table_name, day, min_files):
                compacted += 1
                if on_compact:
                    on_compact(table_name, day)
    for table_name in (USERS, MOVIES):
        if writer.compact(table_name, None, min_files):
            compacted += 1
    for day in partitions(lake_root, WATCH_MINUTES):
        if (wanted is None or day in wanted) and sessions_stale(lake_root, day):
            rebuild_sessions(lake_root, day, gap_s)
            rebuilt += 1
    return {"compacted": compacted, "sessions_rebuilt": rebuilt}
