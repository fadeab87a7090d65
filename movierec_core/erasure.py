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
        self._by_key: dict[str | None, frozenset[int]] = {}

    def current(self) -> frozenset[int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self._users
        state = (st.st_mtime, st.st_size)
        if state != self._state:
            by_key: dict[str | None, set[int]] = {}
            for entry in ledger_entries(self.lake_root):
                by_key.setdefault(entry.get("key_id"), set()).add(int(entry["user_id"]))
            self._by_key = {k: frozenset(v) for k, v in by_key.items()}
            self._users = frozenset().union(*self._by_key.values())
            self._state = state
        return self._users

    def by_key(self) -> dict[str | None, frozenset[int]]:
        """The erased ids per pseudonym key they were recorded under (None: raw ids); entries
        a key rotation could not map stay under their old key (ingestor/rekey.py)."""
        self.current()
        return self._by_key


def ledger_entries(lake_root: Path | str) -> list[dict]:
    path = Path(lake_root) / LEDGER
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_ledger(lake_root: Path | str) -> set[int]:
    return {int(entry["user_id"]) for entry in ledger_entries(lake_root)}


def record(lake_root: Path | str, users: Iterable[int], caller: str,
           key_id: str | None = None) -> None:
    """Append erased ids (pseudonyms under ``key_id`` when the lake holds pseudonyms)."""
    now = datetime.now(UTC).isoformat()
    _append(lake_root, [{"user_id": int(u), "erased_at": now, "by": caller,
                         **({"key_id": key_id} if key_id else {})} for u in users], "a")


def _append(lake_root: Path | str, entries: list[dict], mode: str) -> None:
    path = Path(lake_root) / LEDGER
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path if mode == "a" else path.with_suffix(".tmp")
    with open(target, mode) as handle:
        for entry in entries:
            handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    if target != path:
        os.replace(target, path)


def rekey_ledger(lake_root: Path | str, new_id, from_key: str | None, to_key: str) -> int:
    """Entries recorded under ``from_key`` move to ``new_id(user_id)`` under ``to_key``; those
    it maps to None keep their key (a late event is still matched while that key is in the
    ring). Returns how many moved."""
    entries, moved = [], 0
    for entry in ledger_entries(lake_root):
        if entry.get("key_id") == from_key:
            new = new_id(int(entry["user_id"]))
            if new is not None:
                entry = {**entry, "user_id": new, "key_id": to_key}
                moved += 1
        entries.append(entry)
    if entries:
        _append(lake_root, entries, "w")
    return moved


def drop_erased(table: pa.Table, erased: frozenset[int] | set[int]) -> pa.Table:
    """``table`` without the rows of erased users (as is when none)."""
    if not erased or table.num_rows == 0 or "user_id" not in table.column_names:
        return table
    mask = pc.is_in(table.column("user_id"), value_set=pa.array(sorted(erased), pa.int64()))
    if not pc.any(mask).as_py():
        return table
    return table.filter(pc.invert(mask))


