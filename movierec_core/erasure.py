"""The erasure ledger: which users were erased (``<lake>/_erased/users.jsonl``), read by every
component that must leave them out (the ingestor's writes, the trainer's input). The erasure
itself is ``python -m ingestor erase`` (:mod:`ingestor.erase`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

LEDGER = Path("_erased") / "users.jsonl"


class ErasedUsers:
    """The ledger's set of erased ids, re-read when the file changes (one ``stat`` per call)."""

    def __init__(self, lake_root: Path | str) -> None:
        self.lake_root = Path(lake_root)
        self.path = self.lake_root / LEDGER
        self._state: tuple[float, int] | None = None
        self._users: frozenset[int] = frozenset()

    def current(self) -> frozenset[int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self._users
        state = (st.st_mtime, st.st_size)
        if state != self._state:
            self._users = frozenset(read_ledger(self.lake_root))
            self._state = state
        return self._users


def read_ledger(lake_root: Path | str) -> set[int]:
    path = Path(lake_root) / LEDGER
    if not path.is_file():
        return set()
    users = set()
    for line in path.read_text().splitlines():
        if line.strip():
            users.add(int(json.loads(line)["user_id"]))
    return users


def record(lake_root: Path | str, users: Iterable[int], caller: str) -> None:
    path = Path(lake_root) / LEDGER
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    with open(path, "a") as handle:
        for u in users:
            handle.write(json.dumps({"user_id": int(u), "erased_at": now, "by": caller}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def drop_erased(table: pa.Table, erased: frozenset[int] | set[int]) -> pa.Table:
    """``table`` without the rows of erased users (as is when none)."""
    if not erased or table.num_rows == 0 or "user_id" not in table.column_names:
        return table
    mask = pc.is_in(table.column("user_id"), value_set=pa.array(sorted(erased), pa.int64()))
    if not pc.any(mask).as_py():
        return table
    return table.filter(pc.invert(mask))


