"""The Parquet lake's layout and per-table schemas: the ingestor writes them, everyone else reads.

Layout: ``<root>/<table>/event_date=YYYY-MM-DD/<file>.parquet`` (Hive-style partitions, so
``pyarrow.dataset`` reads them with the date as a column). Snapshot manifests live in
``<root>/_snapshots/<snapshot_id>.json``; drift reports in ``<root>/_drift/``.

``event_id`` is a stable 64-bit hash of the raw line (see :func:`line_id`); the ingestor uses it
to keep each accepted line once whatever the redeliveries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

TS = pa.timestamp("us")

WATCH_MINUTES = "watch_minutes"
RATINGS = "ratings"
ACCOUNT_CREATIONS = "account_creations"
RECOMMENDATION_REQUESTS = "recommendation_requests"
WATCH_SESSIONS = "watch_sessions"  # derived from watch_minutes
USERS = "users"  # enrichment (metadata API), not date-partitioned
MOVIES = "movies"  # enrichment (metadata API), not date-partitioned
SNAPSHOTS_DIR = "_snapshots"

SCHEMAS: dict[str, pa.Schema] = {
    WATCH_MINUTES: pa.schema([
        ("event_id", pa.int64()), ("time", TS), ("user_id", pa.int64()),
        ("movie_id", pa.string()), ("minute", pa.int32()),
    ]),
    RATINGS: pa.schema([
        ("event_id", pa.int64()), ("time", TS), ("user_id", pa.int64()),
        ("movie_id", pa.string()), ("stars", pa.int16()),
    ]),
    ACCOUNT_CREATIONS: pa.schema([
        ("event_id", pa.int64()), ("time", TS), ("user_id", pa.int64()),
    ]),
    RECOMMENDATION_REQUESTS: pa.schema([
        ("event_id", pa.int64()), ("time", TS), ("user_id", pa.int64()),
        ("server", pa.string()), ("status", pa.int16()), ("movie_ids", pa.list_(pa.string())),
        ("error", pa.string()), ("response_ms", pa.int32()), ("line", pa.string()),
    ]),
    WATCH_SESSIONS: pa.schema([
        ("user_id", pa.int64()), ("movie_id", pa.string()), ("start", TS), ("end", TS),
        ("minutes_watched", pa.int32()), ("max_minute", pa.int32()),
    ]),
    USERS: pa.schema([
        ("user_id", pa.int64()), ("age", pa.int16()), ("gender", pa.string()),
        ("occupation", pa.string()), ("fetched_at", TS),
    ]),
    MOVIES: pa.schema([
        ("movie_id", pa.string()), ("title", pa.string()), ("year", pa.int16()),
        ("genres", pa.list_(pa.string())), ("runtime", pa.int32()), ("cost", pa.float64()),
        ("popularity", pa.float64()), ("vote_average", pa.float64()), ("release_date", pa.string()),
        ("fetched_at", TS),
    ]),
}

EVENT_TABLES = (WATCH_MINUTES, RATINGS, ACCOUNT_CREATIONS, RECOMMENDATION_REQUESTS)


def line_id(line: bytes) -> int:
    """Stable signed 64-bit id of a raw line (blake2b), the dedupe key across redeliveries."""
    return int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "little", signed=True)


def line_ids(lines: Sequence[bytes]) -> np.ndarray:
    """``line_id`` of every line (int64), the digests joined and read as one array."""
    # a copy of one configured hasher per line: a third cheaper than blake2b(line,
    # digest_size=8) (whose keyword parsing is most of its cost), same digests
    copy = hashlib.blake2b(digest_size=8).copy
    digests = []
    append = digests.append
    for line in lines:
        hasher = copy()
        hasher.update(line)
        append(hasher.digest())
    return np.frombuffer(b"".join(digests), "<i8").astype(np.int64)


def partition_dir(root: Path | str, table: str, day: date | datetime) -> Path:
    if isinstance(day, datetime):
        day = day.date()
    return Path(root) / table / f"event_date={day.isoformat()}"


def table_dir(root: Path | str, table: str) -> Path:
    return Path(root) / table


def snapshot_path(root: Path | str, snapshot_id: str) -> Path:
    return Path(root) / SNAPSHOTS_DIR / f"{snapshot_id}.json"
