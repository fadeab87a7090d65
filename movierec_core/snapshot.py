"""Immutable training snapshots of the Parquet lake: a file list, content hashes and a time range.

``create_snapshot`` hard-links (copies where links are impossible) every lake file of the chosen
date range into ``<lake_root>/_snapshots/<id>/`` and writes the manifest
``<lake_root>/_snapshots/<id>.json`` (format in docs/architecture.md). Lake files are never
modified in place (the ingestor writes new files and compaction replaces files by rename), so a
linked file keeps its bytes whatever happens to the lake afterwards: the snapshot is immutable.

``load_snapshot`` verifies every file's size and sha256 against the manifest before reading, and
raises :class:`SnapshotNotFound` / :class:`SnapshotCorrupt` with the path at fault.

Partition directories are locked (``fcntl.flock`` on ``<partition>/.lock``) by the ingestor while
it writes or compacts them; snapshots take the same lock while linking, so a snapshot never sees
half a compaction. :func:`partition_lock` is that lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from movierec_core.lake import (
    EVENT_TABLES,
    MOVIES,
    SCHEMAS,
    SNAPSHOTS_DIR,
    USERS,
    WATCH_SESSIONS,
    snapshot_path,
)
from movierec_core.pseudonym import lake_key_id

__all__ = [
    "DATED_TABLES",
    "SnapshotCorrupt",
    "SnapshotError",
    "SnapshotNotFound",
    "UNDATED_TABLES",
    "create_snapshot",
    "data_files",
    "list_snapshots",
    "load_snapshot",
    "partition_lock",
]

DATED_TABLES = (*EVENT_TABLES, WATCH_SESSIONS)
UNDATED_TABLES = (USERS, MOVIES)
LOCK_FILE = ".lock"


class SnapshotError(Exception):
    """A snapshot cannot be created or read."""


class SnapshotNotFound(SnapshotError, FileNotFoundError):
    """The manifest or one of its files does not exist."""


class SnapshotCorrupt(SnapshotError):
    """A file's bytes no longer match the manifest, or the manifest is unreadable."""


@contextlib.contextmanager
def partition_lock(directory: Path | str) -> Iterator[Path]:
    """Exclusive lock of one lake directory (a date partition, or ``users``/``movies``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield directory
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def data_files(directory: Path | str) -> list[Path]:
    """The visible Parquet files of a directory (names starting with '.' or '_' are hidden)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.suffix == ".parquet" and not p.name.startswith((".", "_")) and p.is_file())


def _as_date(value: date | datetime | str | None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _partitions(lake_root: Path, table: str, start: date | None, end: date | None) -> list[Path]:
    root = lake_root / table
    if not root.is_dir():
        return []
    out = []
    for part in sorted(root.iterdir()):
        if not part.is_dir() or not part.name.startswith("event_date="):
            continue
        try:
            day = date.fromisoformat(part.name.split("=", 1)[1])
        except ValueError:
            continue
        if (start is None or day >= start) and (end is None or day <= end):
            out.append(part)
    return out


def create_snapshot(lake_root: Path | str, start: date | datetime | str | None = None,
                    end: date | datetime | str | None = None) -> dict:
    """Freeze the lake's files of event dates ``start``..``end`` (inclusive; None: unbounded)
    plus the enrichment tables; return the manifest (also written to ``_snapshots/<id>.json``)."""
    lake_root = Path(lake_root)
    start_d, end_d = _as_date(start), _as_date(end)
    if start_d and end_d and start_d > end_d:
        raise SnapshotError(f"snapshot start {start_d} is after end {end_d}")
    created = datetime.now(UTC)
    staging_id = f".staging-{created.strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}"
    staging = lake_root / SNAPSHOTS_DIR / staging_id
    entries: list[tuple[str, Path, str]] = []  # (table, staged path, relative name in snapshot)
    days: list[date] = []

    def freeze(table: str, directory: Path) -> None:
        with partition_lock(directory):
            for src in data_files(directory):
                rel = src.relative_to(lake_root)
                dst = staging / rel
                _link_or_copy(src, dst)
                entries.append((table, dst, str(rel)))

    for table in DATED_TABLES:
        for part in _partitions(lake_root, table, start_d, end_d):
            freeze(table, part)
            if table in EVENT_TABLES and data_files(part):
                days.append(date.fromisoformat(part.name.split("=", 1)[1]))
    for table in UNDATED_TABLES:
        if (lake_root / table).is_dir():
            freeze(table, lake_root / table)

    files = []
    for table, path, rel in entries:
        files.append({"path": rel, "bytes": path.stat().st_size, "sha256": _sha256(path),
                      "rows": pq.ParquetFile(path).metadata.num_rows, "table": table})
    content = hashlib.sha256()
    for line in sorted(f"{f['table']}\t{f['sha256']}" for f in files):
        content.update(line.encode() + b"\n")
    content_hash = content.hexdigest()
    snapshot_id = f"{created.strftime('%Y%m%dT%H%M%S')}-{content_hash[:12]}"
    final_dir = lake_root / SNAPSHOTS_DIR / snapshot_id
    if final_dir.exists():  # same second, same content: the existing snapshot is this one
        shutil.rmtree(staging, ignore_errors=True)
        return json.loads(snapshot_path(lake_root, snapshot_id).read_text())
    staging.mkdir(parents=True, exist_ok=True)
    staging.rename(final_dir)
    prefix = Path(SNAPSHOTS_DIR) / snapshot_id
    for f in files:
        f["path"] = str(prefix / f["path"])
    time_range = {
        "start": (start_d or (min(days) if days else None)),
        "end": (end_d or (max(days) if days else None)),
    }
    manifest = {
        "snapshot_id": snapshot_id,
        "created_at": created.isoformat(),
        "time_range": {k: (v.isoformat() if v else None) for k, v in time_range.items()},
        "files": files,
        "content_hash": content_hash,
        # the key of its user ids' pseudonyms (movierec_core/pseudonym.py); None: raw ids
        "pseudonym_key_id": lake_key_id(lake_root),
    }
    path = snapshot_path(lake_root, snapshot_id)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return manifest


def list_snapshots(lake_root: Path | str) -> list[str]:
    """Snapshot ids in the lake, oldest first: by the second their id names, then by the
    manifest's creation time (two snapshots of one second were ordered by their content hash,
    and retention could keep the older)."""
    directory = Path(lake_root) / SNAPSHOTS_DIR
    if not directory.is_dir():
        return []

    def created_at(path: Path) -> str:
        try:
            return str(json.loads(path.read_text()).get("created_at") or "")
        except (OSError, ValueError):
            return ""

    paths = [p for p in directory.glob("*.json") if not p.name.startswith(".")]
    return [p.stem for p in sorted(paths, key=lambda p: (p.stem[:15], created_at(p), p.stem))]


def delete_snapshot(lake_root: Path | str, snapshot_id: str) -> None:
    """Remove a snapshot: its manifest first (it is then gone for readers), then its files."""
    snapshot_path(lake_root, snapshot_id).unlink(missing_ok=True)
    shutil.rmtree(Path(lake_root) / SNAPSHOTS_DIR / snapshot_id, ignore_errors=True)


def read_manifest(lake_root: Path | str, snapshot_id: str) -> dict:
    path = snapshot_path(lake_root, snapshot_id)
    if not path.is_file():
        known = ", ".join(list_snapshots(lake_root)[-5:]) or "none"
        raise SnapshotNotFound(f"snapshot {snapshot_id!r} not found: no manifest at {path} "
                               f"(latest snapshots: {known})")
    try:
        manifest = json.loads(path.read_text())
        manifest["files"]  # noqa: B018 - shape check
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotCorrupt(f"snapshot manifest {path} is unreadable: {exc}") from exc
    return manifest


def load_snapshot(lake_root: Path | str, snapshot_id: str) -> dict[str, pa.Table]:
    """Every table of the snapshot (empty tables included), after verifying each file's hash."""
    lake_root = Path(lake_root)
    manifest = read_manifest(lake_root, snapshot_id)
    parts: dict[str, list[pa.Table]] = {t: [] for t in (*DATED_TABLES, *UNDATED_TABLES)}
    for f in manifest["files"]:
        path = lake_root / f["path"]
        if not path.is_file():
            raise SnapshotNotFound(f"snapshot {snapshot_id!r}: file {path} is missing")
        if path.stat().st_size != f["bytes"] or _sha256(path) != f["sha256"]:
            raise SnapshotCorrupt(f"snapshot {snapshot_id!r}: file {path} does not match its "
                                  f"sha256 in the manifest (modified or corrupt)")
        table = pq.ParquetFile(path).read()
        schema = SCHEMAS.get(f["table"])
        if schema is not None:
            table = table.select(schema.names).cast(schema)
        parts.setdefault(f["table"], []).append(table)
    out = {}
    for name, tables in parts.items():
        schema = SCHEMAS.get(name)
        if tables:
            out[name] = pa.concat_tables(tables)
        elif schema is not None:
            out[name] = schema.empty_table()
    return out
