"""Erasure of users (GDPR-style "right to be forgotten"): ``python -m ingestor erase <id>...``.

In this order, each step idempotent, so an interrupted erasure is finished by running it again:

1. **ledger**: the ids are appended to ``<lake>/_erased/users.jsonl`` (fsynced) first: from then
   on the ingestor drops any late event of theirs before the lake and the online store, and
   the trainer excludes them from whatever it reads;
2. **online store**: their interactions, watched minutes and account are deleted and they are
   recorded as erased there, which the model server polls (every second): it answers them
   with the popularity list, not a personalised one, even from a model trained on them;
3. **lake**: every partition of every table holding a row of theirs (raw events, watch
   sessions, the users table) is rewritten without those rows through the compaction journal
   (atomic, crash-safe, under the partition's lock, like compaction);
4. **snapshots**: every snapshot holding a row of theirs is expired (its hard-linked files and
   manifest deleted: a snapshot is immutable, so it cannot be rewritten);
5. **models**: every registered version trained on an expired snapshot gets an
   ``erasure.json`` marker (how many erased users, which snapshots); the next training runs on
   a new snapshot, without them. The served champion keeps its factors until then, but step 2
   already keeps them out of its answers.

The dead-letter topic keeps raw invalid lines until its retention (``kafka.dlq_retention_days``)
deletes them: Kafka cannot delete single records, so the ledger is the tombstone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingestor.lake import _finish_journal, partitions, rewrite_file
from movierec_core.erasure import drop_erased, record
from movierec_core.lake import (
    EVENT_TABLES,
    SCHEMAS,
    USERS,
    WATCH_SESSIONS,
    partition_dir,
    table_dir,
)
from movierec_core.snapshot import (
    data_files,
    delete_snapshot,
    list_snapshots,
    partition_lock,
    read_manifest,
)

log = logging.getLogger("ingestor.erase")

TABLES_WITH_USERS = (*EVENT_TABLES, WATCH_SESSIONS, USERS)


@dataclass
class ErasureReport:
    users: list[int]
    online_store_interactions: int = 0
    lake_rows: dict[str, int] = field(default_factory=dict)
    lake_files_rewritten: int = 0
    snapshots_expired: list[str] = field(default_factory=list)
    versions_marked: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def user_directories(lake_root: Path) -> Iterator[tuple[str, Path]]:
    """(table, directory) of every lake directory whose files hold user ids."""
    for table in TABLES_WITH_USERS:
        directories = ([table_dir(lake_root, table)] if table == USERS else
                       [partition_dir(lake_root, table, d) for d in partitions(lake_root, table)])
        for directory in directories:
            if directory.is_dir():
                yield table, directory


def _holds(path: Path, users: pa.Array) -> int:
    column = pq.read_table(path, columns=["user_id"]).column("user_id")
    return int(pc.sum(pc.is_in(column, value_set=users)).as_py() or 0)


def _rewrite_without(directory: Path, table: str, users: set[int],
                     wanted: pa.Array) -> tuple[int, int]:
    """(rows removed, files rewritten) for one partition directory: each file holding a row of
    theirs is rewritten without it, batch by batch (memory bounded by a batch)."""
    removed = rewritten = 0
    with partition_lock(directory):
        _finish_journal(directory)
        for path in data_files(directory):
            if _holds(path, wanted):
                read, written, _ = rewrite_file(directory, path, SCHEMAS[table],
                                                lambda t: drop_erased(t, users), "erased")
                removed += read - written
                rewritten += 1
    return removed, rewritten


def erase_users(lake_root: Path | str, user_ids: Iterable[int], store=None,
                registry=None, caller: str = "cli", pseudonyms=None,
                key_id: str | None = None) -> ErasureReport:
    """Erase ``user_ids`` everywhere (see the module's docstring); ``store``: the online store,
    ``registry``: the model registry (both optional); ``pseudonyms``: the lake's
    :class:`~movierec_core.pseudonym.Pseudonymizer` when it holds pseudonyms and ``user_ids``
    are ids (the report then names the erased users by their pseudonyms only); ``key_id``:
    the key when ``user_ids`` are pseudonyms already."""
    lake_root = Path(lake_root)
    users = sorted({int(u) for u in user_ids})
    if pseudonyms is not None:
        users, key_id = sorted(pseudonyms.pids(users)), pseudonyms.key_id
    report = ErasureReport(users)
    if not users:
        return report
    record(lake_root, users, caller, key_id)
    if store is not None:
        report.online_store_interactions = store.erase(users)
    wanted = pa.array(users, pa.int64())
    for table, directory in user_directories(lake_root):
        removed, rewritten = _rewrite_without(directory, table, set(users), wanted)
        if removed:
            report.lake_rows[table] = report.lake_rows.get(table, 0) + removed
            report.lake_files_rewritten += rewritten
    for snapshot_id in list_snapshots(lake_root):
        manifest = read_manifest(lake_root, snapshot_id)
        if any(f["table"] in TABLES_WITH_USERS and (lake_root / f["path"]).is_file()
               and _holds(lake_root / f["path"], wanted) for f in manifest["files"]):
            delete_snapshot(lake_root, snapshot_id)
            report.snapshots_expired.append(snapshot_id)
    if registry is not None and report.snapshots_expired:
        report.versions_marked = _mark_versions(registry, set(report.snapshots_expired),
                                                len(users))
    log.info("erasure of %d users: %s", len(users), json.dumps(
        {k: v for k, v in report.to_json().items() if k != "users"}))
    return report


def _mark_versions(registry, expired: set[str], n_users: int) -> list[str]:
    marked = []
    now = datetime.now(UTC).isoformat()
    for model in registry.model_names():
        for info in registry.versions(model):
            snapshot = info.snapshot_id
            if snapshot not in expired:
                continue
            marker = Path(info.path) / "erasure.json"
            previous = json.loads(marker.read_text()) if marker.is_file() else {"events": []}
            previous["events"].append({"at": now, "erased_users": n_users,
                                       "snapshot": snapshot})
            previous["retrain_required"] = True
            marker.write_text(json.dumps(previous, indent=2))
            marked.append(f"{model}/{info.version}")
    return marked
