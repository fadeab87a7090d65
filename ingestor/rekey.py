"""Moving the platform's stored user ids to the current pseudonym key:
``python -m ingestor rekey [--users FILE] [--drop-unmapped] [--keep-snapshots]``.

Two cases (:mod:`movierec_core.pseudonym`):

* **raw ids → the current key** (turning pseudonymisation on for an existing lake): every id
  is mapped by the key itself, nothing else is needed;
* **an older key → the current key** (a rotation): a pseudonym cannot be turned back into an
  id, so the account system's user ids come with ``--users FILE`` (one id per line, ``-``
  for standard input); each maps old pseudonym → new pseudonym. Users of the lake that no id of
  the file maps stop the command before anything changes, unless ``--drop-unmapped`` (their
  rows are then deleted).

What moves: every lake partition holding user ids (raw events, the id inside each logged
recommendation line, watch sessions, the users table), rewritten through the compaction
journal under the partition's lock; the online store (one transaction in SQLite); the erasure
ledger (entries the mapping misses keep their old key: late events still match them while that
key is in the ring). Snapshots are immutable: those under another key are expired unless
``--keep-snapshots`` (a key is rotated because it may be known; its snapshots would stay
linkable). Then ``<lake>/_pseudonym.json`` names the new key. Run it with the ingestor stopped
(its start-up refuses a lake under another key). A progress file
(``<lake>/_pseudonym.rekey.json``) lets an interrupted run finish where it stopped: each
directory, the store and the ledger are moved exactly once.

Registered models keep the key they were trained under (their metadata says which); the model
server serves them while that key is in the ring, and the next training run learns on the new
pseudonyms.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingestor.erase import user_directories
from ingestor.lake import _finish_journal, rewrite_file
from ingestor.pipeline import map_user_ids
from movierec_core.erasure import rekey_ledger
from movierec_core.lake import SCHEMAS
from movierec_core.pseudonym import KeyRing, PseudonymKeyError, lake_key_id, write_lake_key
from movierec_core.snapshot import (
    data_files,
    delete_snapshot,
    list_snapshots,
    partition_lock,
    read_manifest,
)

log = logging.getLogger("ingestor.rekey")

PROGRESS = "_pseudonym.rekey.json"


@dataclass
class RekeyReport:
    from_key: str | None
    to_key: str | None
    lake_rows: dict[str, int] = field(default_factory=dict)
    lake_rows_dropped: int = 0
    lake_files_rewritten: int = 0
    online_store_users: int = 0
    online_store_users_dropped: int = 0
    ledger_entries: int = 0
    snapshots_expired: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _lake_users(lake_root: Path) -> set[int]:
    users: set[int] = set()
    for _, directory in user_directories(lake_root):
        for path in data_files(directory):
            column = pq.read_table(path, columns=["user_id"]).column("user_id")
            users.update(pc.unique(column).to_pylist())
    return users


def _progress(lake_root: Path, from_key: str | None, to_key: str) -> dict:
    path = lake_root / PROGRESS
    if path.is_file():
        progress = json.loads(path.read_text())
        if progress["from_key"] == from_key and progress["to_key"] == to_key:
            return progress
    return {"from_key": from_key, "to_key": to_key, "directories": [], "store": False,
            "ledger": False}


def _save(lake_root: Path, progress: dict) -> None:
    tmp = lake_root / (PROGRESS + ".tmp")
    tmp.write_text(json.dumps(progress))
    os.replace(tmp, lake_root / PROGRESS)


def rekey(lake_root: Path | str, ring: KeyRing, users: Iterable[int] | None = None, *,
          store=None, drop_unmapped: bool = False,
          keep_snapshots: bool = False) -> RekeyReport:
    """See the module's docstring. Raises :class:`PseudonymKeyError` (nothing changed) when
    the ring has no current key, lacks the lake's key, or (a rotation) ``users`` is missing or
    leaves users of the lake unmapped without ``drop_unmapped``."""
    lake_root = Path(lake_root)
    target = ring.current
    if target is None:
        raise PseudonymKeyError("no pseudonym key is configured (MOVIEREC_PSEUDONYM_KEYS or "
                                "data.pseudonym_keys_file): nothing to rekey to")
    source_id = lake_key_id(lake_root)
    report = RekeyReport(source_id, target.key_id)
    if source_id == target.key_id:
        return report
    progress = _progress(lake_root, source_id, target.key_id)
    if source_id is None:
        new_id: Callable[[int], int | None] = target.pid
    else:
        source = ring.get(source_id)  # raises when the old key is no longer in the ring
        if users is None:
            raise PseudonymKeyError(
                f"the lake holds pseudonyms under key {source_id!r}: a pseudonym cannot be "
                "turned back into an id, so rotating needs the account system's user ids "
                "(--users FILE)")
        mapping = {source.pid(int(u)): target.pid(int(u)) for u in users}
        new_id = mapping.get
        if not progress["directories"]:  # not once some partitions hold new pseudonyms
            unmapped = _lake_users(lake_root) - mapping.keys()
            if unmapped and not drop_unmapped:
                raise PseudonymKeyError(
                    f"{len(unmapped)} users of the lake are not among the --users ids; "
                    "nothing was changed (--drop-unmapped deletes their rows)")
    done = set(progress["directories"])
    moved = set(progress.setdefault("files", []))  # new files of a directory not finished yet
    for table, directory in user_directories(lake_root):
        key = str(directory.relative_to(lake_root))
        if key in done:
            continue
        with partition_lock(directory):
            _finish_journal(directory)
            for path in data_files(directory):  # file by file, batch by batch
                if str(path.relative_to(lake_root)) in moved:
                    continue  # moved before an interruption: its ids are new already
                read, written, output = rewrite_file(
                    directory, path, SCHEMAS[table],
                    lambda t, name=table: map_user_ids(name, t, new_id), "rekeyed")
                report.lake_rows[table] = report.lake_rows.get(table, 0) + written
                report.lake_rows_dropped += read - written
                report.lake_files_rewritten += 1
                progress["files"].append(str(output.relative_to(lake_root)))
                _save(lake_root, progress)
        progress["directories"].append(key)
        progress["files"] = []
        _save(lake_root, progress)
    if store is not None and not progress["store"]:
        report.online_store_users, report.online_store_users_dropped = store.rekey(new_id)
        progress["store"] = True
        _save(lake_root, progress)
    if not progress["ledger"]:
        report.ledger_entries = rekey_ledger(lake_root, new_id, source_id, target.key_id)
        progress["ledger"] = True
        _save(lake_root, progress)
    if not keep_snapshots:
        for snapshot_id in list_snapshots(lake_root):
            if read_manifest(lake_root, snapshot_id).get("pseudonym_key_id") != target.key_id:
                delete_snapshot(lake_root, snapshot_id)
                report.snapshots_expired.append(snapshot_id)
    write_lake_key(lake_root, target.key_id)
    (lake_root / PROGRESS).unlink(missing_ok=True)
    log.info("rekeyed the lake from %s to key %r: %s", source_id or "raw ids", target.key_id,
             json.dumps(report.to_json()))
    return report
