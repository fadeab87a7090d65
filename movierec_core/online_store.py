"""The online store: per-user recent interactions and account creation times.

Written by the ingestor (``apply``), read by the model server per request (``interactions``,
``account_created_at``) within about a millisecond. Two backends behind one interface:

* ``sqlite`` (default, embedded): one file in WAL mode, so readers never block the writer.
* ``redis``: a ``redis-server``; per user a hash of interactions and a sorted set by recency.

``apply`` is idempotent per line: every update is a set union (distinct watch minutes), a
maximum (highest minute, last time) or a latest-wins by event time (ratings, with the earliest
account creation kept), so redelivered lines and replayed batches leave the store unchanged.
Times are naive UTC ``datetime`` values (as the parser returns them), stored as microseconds
since the epoch.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from movierec_core.events import AccountCreation, Event, Rating, WatchMinute

__all__ = [
    "OnlineStore",
    "RedisOnlineStore",
    "SqliteOnlineStore",
    "UserInteraction",
    "open_store",
]

_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)


def _to_us(time: datetime) -> int:
    return (time.replace(tzinfo=None) - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


@dataclass(frozen=True)
class UserInteraction:
    movie_id: str
    minutes: int  # distinct watch minutes seen
    max_minute: int  # highest minute seen (-1: none)
    stars: int | None  # latest rating
    last_time: datetime


@runtime_checkable
class OnlineStore(Protocol):
    def apply(self, events: Iterable[Event]) -> None:
        """Fold events into the store; idempotent per line."""

    def interactions(self, user_id: int, limit: int = 500) -> list[UserInteraction]:
        """The user's interactions, newest first."""

    def watermark(self) -> datetime | None:
        """The newest event time applied so far (the stream's event-time clock), or None."""

    def account_created_at(self, user_id: int) -> datetime | None:
        """When the user's account was created, if the store has seen it."""

    def erase(self, user_ids: Iterable[int]) -> int:
        """Remove everything the store holds of these users and remember them as erased;
        returns the interactions removed."""

    def erased_users(self) -> set[int]:
        """Every user erased so far (serving answers them without personalisation)."""

    def close(self) -> None: ...


@dataclass
class _Batch:
    """A batch of events aggregated per (user, movie): few store round trips per batch."""

    watches: dict[tuple[int, str], list]  # -> [set(minutes), max_minute, last_us]
    ratings: dict[tuple[int, str], tuple[int, int]]  # -> (stars, time_us), latest wins
    accounts: dict[int, int]  # -> earliest created_us

    def newest_us(self) -> int | None:
        """The batch's newest event time (µs), the event-time watermark it brings."""
        times = [w[2] for w in self.watches.values()]
        times += [t for _, t in self.ratings.values()]
        times += list(self.accounts.values())
        return max(times) if times else None

    @classmethod
    def of(cls, events: Iterable[Event]) -> _Batch:
        watches: dict[tuple[int, str], list] = {}
        ratings: dict[tuple[int, str], tuple[int, int]] = {}
        accounts: dict[int, int] = {}
        for event in events:
            if isinstance(event, WatchMinute):
                key = (event.user_id, event.movie_id)
                t = _to_us(event.time)
                agg = watches.get(key)
                if agg is None:
                    watches[key] = [{event.minute}, event.minute, t]
                else:
                    agg[0].add(event.minute)
                    if event.minute > agg[1]:
                        agg[1] = event.minute
                    if t > agg[2]:
                        agg[2] = t
            elif isinstance(event, Rating):
                key = (event.user_id, event.movie_id)
                t = _to_us(event.time)
                old = ratings.get(key)
                if old is None or t >= old[1]:
                    ratings[key] = (event.stars, t)
            elif isinstance(event, AccountCreation):
                t = _to_us(event.time)
                old_t = accounts.get(event.user_id)
                if old_t is None or t < old_t:
                    accounts[event.user_id] = t
        return cls(watches, ratings, accounts)

    @classmethod
    def of_tables(cls, watch_minutes: Any, events: Iterable[Event] = ()) -> _Batch:
        """Watch minutes as an Arrow table (lake schema), aggregated in Arrow: per pair, not
        per event, in Python. ``events``: any other events (ratings, account creations)."""
        batch = cls.of(events)
        if watch_minutes is not None and watch_minutes.num_rows:
            import pyarrow as pa

            data = watch_minutes.select(["user_id", "movie_id", "minute", "time"])
            data = data.set_column(3, "time", data.column("time").cast(pa.int64()))
            grouped = data.group_by(["user_id", "movie_id"]).aggregate(
                [("minute", "distinct"), ("minute", "max"), ("time", "max")])
            for u, m, distinct, max_minute, last in zip(
                    grouped.column("user_id").to_pylist(), grouped.column("movie_id").to_pylist(),
                    grouped.column("minute_distinct").to_pylist(),
                    grouped.column("minute_max").to_pylist(),
                    grouped.column("time_max").to_pylist(), strict=True):
                agg = batch.watches.get((u, m))
                if agg is None:
                    batch.watches[(u, m)] = [set(distinct), max_minute, last]
                else:
                    agg[0].update(distinct)
                    agg[1] = max(agg[1], max_minute)
                    agg[2] = max(agg[2], last)
        return batch


@functools.cache
def _popcount_table() -> Any:
    """Bits set in each byte value 0..255 (numpy)."""
    import numpy as np

    return np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)


@dataclass
class _PairMinutes:
    """A batch's watch minutes below ``_BITMAP_MINUTES`` aggregated per (user, movie) in numpy:
    per pair the highest minute, the newest time (µs) and the bitmap of the minutes (bit
    ``m`` of byte ``m // 8``, little-endian like the stored ``minute_bits``), all pairs' bitmaps
    in one ``bits`` buffer at ``offsets``, with ``counts`` bits set in each."""

    users: list[int]
    movies: list[str]
    max_minute: list[int]
    last_us: list[int]
    counts: list[int]
    offsets: list[int]
    bits: bytes

    @property
    def size(self) -> int:
        return len(self.users)

    def newest_us(self) -> int | None:
        return max(self.last_us) if self.last_us else None

    @classmethod
    def of_table(cls, watch_minutes: Any) -> tuple[_PairMinutes, Any]:
        """(the pairs, the rows left for the per-event path: minutes above the bitmap)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        empty = cls([], [], [], [], [], [0], b"")
        if watch_minutes is None or not watch_minutes.num_rows:
            return empty, None
        minute = watch_minutes.column("minute").to_numpy()
        small = (minute >= 0) & (minute < _BITMAP_MINUTES)
        rest = None
        if not small.all():
            rest = watch_minutes.filter(pa.array(~small))
            watch_minutes = watch_minutes.filter(pa.array(small))
            minute = minute[small]
            if not watch_minutes.num_rows:
                return empty, rest
        users = watch_minutes.column("user_id").to_numpy()
        times = watch_minutes.column("time").cast(pa.int64()).to_numpy()
        encoded = pc.dictionary_encode(watch_minutes.column("movie_id").combine_chunks())
        codes = encoded.indices.to_numpy()
        order = _pair_order(users, codes.astype(np.int64), len(encoded.dictionary))
        users, codes, minute, times = users[order], codes[order], minute[order], times[order]
        n = len(users)
        starts_mask = np.ones(n, dtype=bool)
        starts_mask[1:] = (users[1:] != users[:-1]) | (codes[1:] != codes[:-1])
        starts = np.flatnonzero(starts_mask)
        pair = np.cumsum(starts_mask) - 1
        max_minute = np.maximum.reduceat(minute, starts).astype(np.int64)
        offsets = np.zeros(len(starts) + 1, np.int64)
        np.cumsum((max_minute >> 3) + 1, out=offsets[1:])
        buf = np.zeros(int(offsets[-1]), np.uint8)
        np.bitwise_or.at(buf, offsets[pair] + (minute >> 3),
                         np.left_shift(1, minute & 7).astype(np.uint8))
        counts = _segment_sums(_popcount_table()[buf], offsets)
        movies = encoded.dictionary.to_pylist()
        return cls(users[starts].tolist(), [movies[c] for c in codes[starts].tolist()],
                   max_minute.tolist(), np.maximum.reduceat(times, starts).tolist(),
                   counts.tolist(), offsets.tolist(), buf.tobytes()), rest


def _pair_order(users: Any, codes: Any, n_codes: int) -> Any:
    """The order that groups rows by (user, movie code), users ascending: one stable argsort
    of ``user * n_codes + code`` (a third of a three-key ``lexsort``'s time on a 100,000-row
    batch) when that fits in int64, else a two-key ``lexsort`` (large pseudonymous ids)."""
    import numpy as np

    if users.size and users.min() >= 0 and int(users.max()) < (2**63 - 1) // max(n_codes, 1):
        return np.argsort(users * n_codes + codes, kind="stable")
    return np.lexsort((codes, users))


def _positions(to_start: Any, lengths: Any) -> Any:
    """Where the bytes of segments laid back to back (``lengths`` bytes each) go in a buffer
    where the segments start at ``to_start`` (numpy arrays)."""
    import numpy as np

    within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(lengths) - lengths, lengths)
    return np.repeat(to_start, lengths) + within


def _segment_sums(values: Any, bounds: Any) -> Any:
    """Sums of ``values`` between consecutive ``bounds`` (empty segments sum to 0)."""
    import numpy as np

    running = np.zeros(len(values) + 1, np.int64)
    np.cumsum(values, out=running[1:])
    return running[bounds[1:]] - running[bounds[:-1]]


# --------------------------------------------------------------------------------------------
# SQLite (WAL)

# Distinct watch minutes are a bitmap per (user, movie) for minutes below _BITMAP_MINUTES (any
# real film), plus one row per minute in ``seen_minutes`` above it (absurd minutes stay exact
# without letting a bitmap grow to megabytes).
_BITMAP_MINUTES = 1 << 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_minutes (
    user_id INTEGER NOT NULL, movie_id TEXT NOT NULL, minute INTEGER NOT NULL,
    PRIMARY KEY (user_id, movie_id, minute)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS interactions (
    user_id INTEGER NOT NULL, movie_id TEXT NOT NULL,
    minutes INTEGER NOT NULL DEFAULT 0, max_minute INTEGER NOT NULL DEFAULT -1,
    stars INTEGER, stars_time INTEGER, last_time INTEGER NOT NULL,
    minute_bits BLOB,
    PRIMARY KEY (user_id, movie_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (
    user_id INTEGER PRIMARY KEY, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS erased (
    user_id INTEGER PRIMARY KEY, erased_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_UPSERT_WATERMARK = """
INSERT INTO meta (key, value) VALUES ('watermark', ?1)
ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)
"""
_USER_TABLES = ("seen_minutes", "interactions", "accounts", "erased")

# a (user, movie)'s watch row: the count and bitmap as given (already merged with the stored
# ones), the highest minute and the last time the larger; one rule for both write paths
_UPSERT_WATCH_FROM = """
INSERT INTO interactions (user_id, movie_id, minutes, max_minute, stars, stars_time, last_time,
                          minute_bits)
{rows}
ON CONFLICT (user_id, movie_id) DO UPDATE SET
    minutes = excluded.minutes,
    minute_bits = excluded.minute_bits,
    max_minute = max(max_minute, excluded.max_minute),
    last_time = max(last_time, excluded.last_time)
"""
_UPSERT_WATCH = _UPSERT_WATCH_FROM.format(rows="VALUES (?1, ?2, ?3, ?4, NULL, NULL, ?5, ?6)")

# The batch path's two statements take the whole batch in one step each (JSON rows in, one
# aggregate row out): SQLite then runs without the interpreter lock for the whole statement,
# where executemany/fetchall give the lock up and take it back around every row; beside the
# ingestor's parse thread that made the upserts of a 100,000-record batch ~25 % slower (wall).
_OLD_BITMAPS = """
SELECT json_group_array(j.key), group_concat(hex(coalesce(i.minute_bits, x'')), ''),
       json_group_array(length(coalesce(i.minute_bits, x''))), json_group_array(i.minutes)
FROM json_each(?1) j JOIN interactions i
ON i.user_id = json_extract(j.value, '$[0]') AND i.movie_id = json_extract(j.value, '$[1]')
"""
# rows: [user, movie, minutes, max_minute, last_time, offset, length] of the bitmap in ?2
_UPSERT_WATCH_ROWS = _UPSERT_WATCH_FROM.format(rows="""\
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, NULL, NULL, value ->> 4,
       substr(?2, (value ->> 5) + 1, value ->> 6)
FROM json_each(?1) WHERE true""")

_UPSERT_RATING = """
INSERT INTO interactions (user_id, movie_id, minutes, max_minute, stars, stars_time, last_time)
VALUES (?1, ?2, 0, -1, ?3, ?4, ?4)
ON CONFLICT (user_id, movie_id) DO UPDATE SET
    stars = CASE WHEN stars_time IS NULL OR excluded.stars_time >= stars_time
                 THEN excluded.stars ELSE stars END,
    stars_time = max(coalesce(stars_time, excluded.stars_time), excluded.stars_time),
    last_time = max(last_time, excluded.last_time)
"""

_UPSERT_ACCOUNT = """
INSERT INTO accounts (user_id, created_at) VALUES (?1, ?2)
ON CONFLICT (user_id) DO UPDATE SET created_at = min(created_at, excluded.created_at)
"""

_SELECT_INTERACTIONS = """
SELECT movie_id, minutes, max_minute, stars, last_time FROM interactions
WHERE user_id = ? ORDER BY last_time DESC, movie_id LIMIT ?
"""


def _write_ahead_log(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Put the database in WAL mode (once per file: the mode persists). Processes opening a new
    file at once race to switch it, and SQLite answers the loser "database is locked" without
    calling the busy handler (measured: 2 of 120 openers, three processes at a time); the
    switch is retried with backoff until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.5)


class SqliteOnlineStore:
    """One SQLite file in WAL mode; a connection per thread (readers never block the writer)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        self.last_lock_wait_s = 0.0  # how long the last write waited for the write lock (logs)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._conn()
        conn.executescript(_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(interactions)")}
        if "minute_bits" not in columns:  # a store created before the bitmaps
            conn.execute("ALTER TABLE interactions ADD COLUMN minute_bits BLOB")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)
            _write_ahead_log(conn, self._busy_timeout_s)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside ``BEGIN IMMEDIATE`` (the write lock taken at once):
        committed when the block ends, rolled back when it raises."""
        conn = self._conn()
        asked = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        self.last_lock_wait_s = time.perf_counter() - asked
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def apply(self, events: Iterable[Event]) -> None:
        self.apply_batch(_Batch.of(events))

    def apply_tables(self, watch_minutes: Any, events: Iterable[Event] = ()) -> None:
        """Fast path for the ingestor: watch minutes as an Arrow table (lake schema). Their
        bitmaps are built per batch in numpy (:class:`_PairMinutes`); Python runs once per
        (user, movie) pair, not per minute. Equal to ``apply`` of the same events."""
        pairs, rest = _PairMinutes.of_table(watch_minutes)
        batch = _Batch.of_tables(rest, events)
        newest = [t for t in (batch.newest_us(), pairs.newest_us()) if t is not None]
        if not newest:
            return
        with self._transaction() as conn:
            if pairs.size:
                self._apply_pairs(conn, pairs)
            self._apply_in(conn, batch, max(newest))

    def apply_batch(self, batch: _Batch) -> None:
        if not (batch.watches or batch.ratings or batch.accounts):
            return
        with self._transaction() as conn:
            self._apply_in(conn, batch, batch.newest_us())

    def _apply_in(self, conn: sqlite3.Connection, batch: _Batch, newest_us: int | None) -> None:
        if batch.watches:
            self._apply_watches(conn, batch.watches)
        if batch.ratings:
            conn.executemany(
                _UPSERT_RATING,
                ((u, m, stars, t) for (u, m), (stars, t) in batch.ratings.items()))
        if batch.accounts:
            conn.executemany(_UPSERT_ACCOUNT, batch.accounts.items())
        if newest_us is not None:
            conn.execute(_UPSERT_WATERMARK, (newest_us,))

    @staticmethod
    def _old_rows(conn: sqlite3.Connection, keys: Iterable[tuple[int, str]]
                  ) -> list[tuple[int, str, bytes | None, int]]:
        """``(user, movie, minute_bits, minutes)`` of the stored rows among ``keys``."""
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS touched "
                     "(user_id INTEGER, movie_id TEXT, PRIMARY KEY (user_id, movie_id))")
        conn.execute("DELETE FROM touched")
        conn.executemany("INSERT OR IGNORE INTO touched VALUES (?, ?)", keys)
        return conn.execute(
            "SELECT i.user_id, i.movie_id, i.minute_bits, i.minutes FROM interactions i "
            "JOIN touched t ON i.user_id = t.user_id AND i.movie_id = t.movie_id").fetchall()

    @classmethod
    def _apply_pairs(cls, conn: sqlite3.Connection, pairs: _PairMinutes) -> None:
        """Upsert the batch's bitmaps, each ORed with the stored one (the stored count keeps
        the minutes above the bitmap, from ``seen_minutes``). The merge runs in numpy over
        all pairs at once; Python binds two parameters per statement, not a row each."""
        import numpy as np

        # the stored rows of the batch's pairs, numbered by their place in the batch: the keys
        # go in as one JSON array, the stored bitmaps come back as one hex string
        keys = orjson.dumps(list(zip(pairs.users, pairs.movies, strict=True))).decode()
        found, hexed, old_lengths, old_minutes = conn.execute(_OLD_BITMAPS, (keys,)).fetchone()
        offsets = np.asarray(pairs.offsets, np.int64)
        counts = np.asarray(pairs.counts, np.int64)
        data = pairs.bits
        which = np.asarray(orjson.loads(found), np.int64)
        if which.size:
            old_len = np.asarray(orjson.loads(old_lengths), np.int64)
            old_n = np.asarray(orjson.loads(old_minutes), np.int64)
            old_buf = np.frombuffer(bytes.fromhex(hexed or ""), np.uint8)
            new_len = np.diff(offsets)
            merged_len = new_len.copy()
            merged_len[which] = np.maximum(new_len[which], old_len)
            merged_off = np.zeros(pairs.size + 1, np.int64)
            np.cumsum(merged_len, out=merged_off[1:])
            merged = np.zeros(int(merged_off[-1]), np.uint8)
            new_buf = np.frombuffer(data, np.uint8)
            merged[_positions(merged_off[:-1], new_len)] = new_buf
            old_off = np.zeros(len(old_len) + 1, np.int64)
            np.cumsum(old_len, out=old_off[1:])
            merged[_positions(merged_off[which], old_len)] |= old_buf
            popcount = _popcount_table()
            counts = _segment_sums(popcount[merged], merged_off)
            counts[which] += old_n - _segment_sums(popcount[old_buf], old_off)
            offsets, data = merged_off, merged.tobytes()
        rows = orjson.dumps(list(zip(pairs.users, pairs.movies, counts.tolist(), pairs.max_minute,
                                     pairs.last_us, offsets[:-1].tolist(),
                                     np.diff(offsets).tolist(), strict=True))).decode()
        conn.execute(_UPSERT_WATCH_ROWS, (rows, data))

    @classmethod
    def _apply_watches(cls, conn: sqlite3.Connection, watches: dict) -> None:
        old = {(u, m): (bits, n) for u, m, bits, n in cls._old_rows(conn, watches.keys())}
        overflow = []
        rows = []
        for (u, m), (minutes, max_minute, last) in watches.items():
            bits_old, n_old = old.get((u, m), (None, 0))
            bits = int.from_bytes(bits_old, "little") if bits_old else 0
            extra_old = n_old - bits.bit_count() if bits_old is not None or n_old else 0
            added = 0
            for minute in minutes:
                if minute < _BITMAP_MINUTES:
                    bits |= 1 << minute
                else:
                    overflow.append((u, m, minute))
                    added += 1
            extra = extra_old
            if added:
                before = conn.execute(
                    "SELECT count(*) FROM seen_minutes WHERE user_id = ? AND movie_id = ?",
                    (u, m)).fetchone()[0]
                conn.executemany("INSERT OR IGNORE INTO seen_minutes VALUES (?, ?, ?)",
                                 overflow[-added:])
                extra = extra_old + conn.execute(
                    "SELECT count(*) FROM seen_minutes WHERE user_id = ? AND movie_id = ?",
                    (u, m)).fetchone()[0] - before
            blob = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
            rows.append((u, m, bits.bit_count() + extra, max_minute, last, blob))
        conn.executemany(_UPSERT_WATCH, rows)

    def interactions(self, user_id: int, limit: int = 500) -> list[UserInteraction]:
        rows = self._conn().execute(_SELECT_INTERACTIONS, (int(user_id), int(limit))).fetchall()
        return [UserInteraction(m, n, mx, stars, _from_us(t)) for m, n, mx, stars, t in rows]

    def erase(self, user_ids: Iterable[int]) -> int:
        users = [(int(u),) for u in user_ids]
        now = _to_us(datetime.now(UTC).replace(tzinfo=None))
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM interactions WHERE user_id = ?", users)
            removed = conn.total_changes - before
            conn.executemany("DELETE FROM seen_minutes WHERE user_id = ?", users)
            conn.executemany("DELETE FROM accounts WHERE user_id = ?", users)
            conn.executemany("INSERT OR IGNORE INTO erased VALUES (?, ?)",
                             [(u, now) for (u,) in users])
        return removed

    def erased_users(self) -> set[int]:
        return {u for (u,) in self._conn().execute("SELECT user_id FROM erased")}

    def watermark(self) -> datetime | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'watermark'").fetchone()
        return _from_us(row[0]) if row else None

    def rekey(self, new_id: Callable[[int], int | None]) -> tuple[int, int]:
        """Move every user's rows to ``new_id(user_id)`` (a pseudonym key rotation,
        :mod:`movierec_core.pseudonym`); the data of users it maps to None is deleted, their
        erased mark kept as it is (a model trained under the old key still knows them).
        Returns (users moved, users whose data was deleted); one transaction."""
        with self._transaction() as conn:
            users = [u for (u,) in conn.execute(
                "SELECT user_id FROM interactions UNION SELECT user_id FROM accounts "
                "UNION SELECT user_id FROM erased")]
            mapping = [(u, new_id(u)) for u in users]
            with_data = {u for (u,) in conn.execute(
                "SELECT user_id FROM interactions UNION SELECT user_id FROM accounts")}
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS rekey_map "
                         "(old INTEGER PRIMARY KEY, new INTEGER)")
            conn.execute("DELETE FROM rekey_map")
            conn.executemany("INSERT INTO rekey_map VALUES (?, ?)", mapping)
            for table in _USER_TABLES:
                if table != "erased":
                    conn.execute(f"DELETE FROM {table} WHERE user_id IN "  # noqa: S608
                                 "(SELECT old FROM rekey_map WHERE new IS NULL)")
                conn.execute(f"UPDATE {table} SET user_id = "  # noqa: S608 - constant names
                             f"(SELECT new FROM rekey_map WHERE old = {table}.user_id) "
                             "WHERE user_id IN (SELECT old FROM rekey_map WHERE new IS NOT NULL)")
            conn.execute("DELETE FROM rekey_map")
        moved = sum(1 for _, new in mapping if new is not None)
        return moved, sum(1 for u, new in mapping if new is None and u in with_data)

    def expire(self, before: datetime) -> int:
        """Delete interactions last touched before ``before`` (retention); returns how many."""
        cutoff = _to_us(before)
        with self._transaction() as conn:
            old = conn.execute("SELECT user_id, movie_id FROM interactions WHERE last_time < ?",
                               (cutoff,)).fetchall()
            conn.executemany("DELETE FROM seen_minutes WHERE user_id = ? AND movie_id = ?", old)
            conn.execute("DELETE FROM interactions WHERE last_time < ?", (cutoff,))
        return len(old)

    def account_created_at(self, user_id: int) -> datetime | None:
        row = self._conn().execute(
            "SELECT created_at FROM accounts WHERE user_id = ?", (int(user_id),)).fetchone()
        return None if row is None else _from_us(row[0])

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()


# --------------------------------------------------------------------------------------------
# Redis
#
# Keys (prefix configurable, default "mr:"):
#   <p>ia:<user>          hash  movie -> "minutes,max_minute,stars,stars_time,last_time"
#   <p>rc:<user>          zset  movie scored by last_time (us), for newest-first reads
#   <p>mn:<user>:<movie>  set   distinct watch minutes
#   <p>ac:<user>          string earliest account creation time (us)

_WATCH_LUA = """
local n = 0
for i = 4, #ARGV, 1000 do
  redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
n = redis.call('SCARD', KEYS[2])
local movie, max_minute, last = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local stars, stars_time = '', ''
local old = redis.call('HGET', KEYS[1], movie)
if old then
  local f = {}
  for v in string.gmatch(old .. ',', '([^,]*),') do f[#f + 1] = v end
  if tonumber(f[2]) > max_minute then max_minute = tonumber(f[2]) end
  stars, stars_time = f[3], f[4]
  if tonumber(f[5]) > last then last = tonumber(f[5]) end
end
redis.call('HSET', KEYS[1], movie,
  n .. ',' .. max_minute .. ',' .. stars .. ',' .. stars_time .. ',' .. string.format('%d', last))
redis.call('ZADD', KEYS[3], 'GT', last, movie)
return n
"""

_RATING_LUA = """
local movie, stars, t = ARGV[1], ARGV[2], tonumber(ARGV[3])
local minutes, max_minute, last, stars_time = '0', '-1', t, t
local old = redis.call('HGET', KEYS[1], movie)
if old then
  local f = {}
  for v in string.gmatch(old .. ',', '([^,]*),') do f[#f + 1] = v end
  minutes, max_minute = f[1], f[2]
  if f[4] ~= '' and tonumber(f[4]) > t then stars, stars_time = f[3], tonumber(f[4]) end
  if tonumber(f[5]) > last then last = tonumber(f[5]) end
end
redis.call('HSET', KEYS[1], movie, minutes .. ',' .. max_minute .. ',' .. stars .. ','
  .. string.format('%d', stars_time) .. ',' .. string.format('%d', last))
redis.call('ZADD', KEYS[2], 'GT', last, movie)
return 1
"""

_ACCOUNT_LUA = """
local cur = redis.call('GET', KEYS[1])
if (not cur) or tonumber(ARGV[1]) < tonumber(cur) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class RedisOnlineStore:
    """The same store on a redis-server (redis-py); updates are Lua scripts, so atomic."""

    def __init__(self, url: str, prefix: str = "mr:", client: Any = None,
                 ttl_s: int = 0, username: str = "") -> None:
        """``username`` (an ACL user) and the password from ``MOVIEREC_REDIS_PASSWORD`` (a
        Secret) authenticate; ``rediss://`` URLs use TLS."""
        import os

        import redis  # only this backend needs it

        self.prefix = prefix
        password = os.environ.get("MOVIEREC_REDIS_PASSWORD") or None
        self.ttl_s = int(ttl_s)  # > 0: every key written expires this long after its last write
        self._redis = client or redis.Redis.from_url(url, socket_timeout=5.0,
                                                     username=username or None,
                                                     password=password)
        self._watch = self._redis.register_script(_WATCH_LUA)
        self._rating = self._redis.register_script(_RATING_LUA)
        self._account = self._redis.register_script(_ACCOUNT_LUA)

    def apply(self, events: Iterable[Event]) -> None:
        self.apply_batch(_Batch.of(events))

    def apply_tables(self, watch_minutes: Any, events: Iterable[Event] = ()) -> None:
        """Fast path for the ingestor: watch minutes as an Arrow table (lake schema)."""
        self.apply_batch(_Batch.of_tables(watch_minutes, events))

    def apply_batch(self, batch: _Batch) -> None:
        p = self.prefix
        pipe = self._redis.pipeline(transaction=False)
        pending = 0
        ttl = self.ttl_s
        for (u, m), (minutes, max_minute, last) in batch.watches.items():
            keys = [f"{p}ia:{u}", f"{p}mn:{u}:{m}", f"{p}rc:{u}"]
            self._watch(keys=keys, args=[m, max_minute, last, *sorted(minutes)], client=pipe)
            if ttl:
                for key in keys:
                    pipe.expire(key, ttl)
            pending += 1
            if pending >= 1000:
                pipe.execute()
                pending = 0
        for (u, m), (stars, t) in batch.ratings.items():
            keys = [f"{p}ia:{u}", f"{p}rc:{u}"]
            self._rating(keys=keys, args=[m, stars, t], client=pipe)
            if ttl:
                for key in keys:
                    pipe.expire(key, ttl)
            pending += 1
        for u, t in batch.accounts.items():
            self._account(keys=[f"{p}ac:{u}"], args=[t], client=pipe)
            if ttl:
                pipe.expire(f"{p}ac:{u}", ttl)
            pending += 1
        newest = batch.newest_us()
        if newest is not None:  # kept at its maximum (ZADD GT), never moved back
            pipe.zadd(f"{p}meta", {"watermark": newest}, gt=True)
            pending += 1
        if pending:
            pipe.execute()

    def watermark(self) -> datetime | None:
        score = self._redis.zscore(f"{self.prefix}meta", "watermark")
        return _from_us(int(score)) if score is not None else None

    def interactions(self, user_id: int, limit: int = 500) -> list[UserInteraction]:
        u = int(user_id)
        movies = self._redis.zrevrange(f"{self.prefix}rc:{u}", 0, int(limit) - 1)
        if not movies:
            return []
        values = self._redis.hmget(f"{self.prefix}ia:{u}", movies)
        out = []
        for movie, value in zip(movies, values, strict=True):
            if value is None:
                continue
            minutes, max_minute, stars, _stars_time, last = value.decode().split(",")
            out.append(UserInteraction(movie.decode(), int(minutes), int(max_minute),
                                       int(stars) if stars else None, _from_us(int(last))))
        out.sort(key=lambda i: (-_to_us(i.last_time), i.movie_id))
        return out

    def erase(self, user_ids: Iterable[int]) -> int:
        p, removed = self.prefix, 0
        for u in (int(x) for x in user_ids):
            movies = self._redis.hkeys(f"{p}ia:{u}")
            removed += len(movies)
            keys = [f"{p}ia:{u}", f"{p}rc:{u}", f"{p}ac:{u}",
                    *(f"{p}mn:{u}:{m.decode()}" for m in movies)]
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(*keys)
            pipe.sadd(f"{p}erased", u)
            pipe.execute()
        return removed

    def erased_users(self) -> set[int]:
        return {int(u) for u in self._redis.smembers(f"{self.prefix}erased")}

    def rekey(self, new_id: Callable[[int], int | None]) -> tuple[int, int]:
        """As :meth:`SqliteOnlineStore.rekey`: every per-user key renamed (``RENAME`` keeps
        its TTL), the erased set's mapped members replaced."""
        p = self.prefix
        users: set[int] = set()
        for kind in ("ia", "rc", "ac"):
            for key in self._redis.scan_iter(match=f"{p}{kind}:*", count=1000):
                users.add(int(key.decode()[len(p) + 3:]))
        erased = self.erased_users()
        moved = dropped = 0
        for u in sorted(users | erased):
            new = new_id(u)
            movies = [m.decode() for m in self._redis.hkeys(f"{p}ia:{u}")]
            pairs = [(f"{p}{kind}:{u}", f"{p}{kind}:{new}") for kind in ("ia", "rc", "ac")]
            pairs += [(f"{p}mn:{u}:{m}", f"{p}mn:{new}:{m}") for m in movies]
            pipe = self._redis.pipeline(transaction=True)
            for old_key, new_key in pairs:
                if new is None:
                    pipe.delete(old_key)
                elif self._redis.exists(old_key):
                    pipe.rename(old_key, new_key)
            if u in erased and new is not None:
                pipe.srem(f"{p}erased", u)
                pipe.sadd(f"{p}erased", new)
            pipe.execute()
            moved += new is not None
            dropped += new is None and u in users
        return moved, dropped

    def expire(self, before: datetime) -> int:
        """Redis keeps retention itself: keys carry ``ttl_s`` from their last write."""
        return 0

    def account_created_at(self, user_id: int) -> datetime | None:
        value = self._redis.get(f"{self.prefix}ac:{int(user_id)}")
        return None if value is None else _from_us(int(value))

    def close(self) -> None:
        self._redis.close()


def open_store(data_cfg: Any, ttl_s: int = 0) -> OnlineStore:
    """The store ``data_cfg`` names (``data.online_store_backend``: sqlite | redis); ``ttl_s``:
    the Redis backend's key TTL (retention; SQLite expires rows with ``expire``)."""
    backend = str(getattr(data_cfg, "online_store_backend", "sqlite")).lower()
    if backend == "sqlite":
        return SqliteOnlineStore(data_cfg.online_store_path)
    if backend == "redis":
        return RedisOnlineStore(data_cfg.redis_url, ttl_s=ttl_s,
                                username=str(getattr(data_cfg, "redis_username", "") or ""))
    raise ValueError(f"unknown online_store_backend {backend!r} (expected sqlite or redis)")
