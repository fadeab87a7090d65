"""Raw lines -> columnar tables per lake table, plus the rejected lines. Pure: no I/O.

The watch minutes (98 % of the stream) and the recommendation requests are parsed a whole batch
at a time by Arrow kernels (:mod:`movierec_core.batch`, equal to the reference parser line for
line); every other line goes through the reference parser into per-table column lists, then one Arrow array per column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec_core.batch import parse_lines
from movierec_core.events import (
    AccountCreation,
    Event,
    EventKind,
    ParserSettings,
    Rating,
    RecommendationRequest,
    Rejection,
    WatchMinute,
)
from movierec_core.lake import (
    ACCOUNT_CREATIONS,
    RATINGS,
    RECOMMENDATION_REQUESTS,
    SCHEMAS,
    WATCH_MINUTES,
    line_ids,
)

TABLE_OF_KIND = {
    EventKind.WATCH: WATCH_MINUTES,
    EventKind.RATE: RATINGS,
    EventKind.ACCOUNT: ACCOUNT_CREATIONS,
    EventKind.RECOMMEND: RECOMMENDATION_REQUESTS,
}
KIND_OF_TABLE = {table: kind for kind, table in TABLE_OF_KIND.items()}


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line for the dead-letter topic, with where it came from."""

    partition: int
    offset: int
    timestamp_ms: int
    rejection: Rejection


@dataclass
class ParsedBatch:
    tables: dict[str, pa.Table]
    events: list[Event]  # ratings and account creations (online store; watch minutes go as
    # the watch_minutes table); redeliveries are harmless, the store is idempotent
    rejected: list[Rejected]
    user_ids: set[int] = field(default_factory=set)
    movie_ids: set[str] = field(default_factory=set)


def parse_batch(values: Sequence[bytes], partitions: Sequence[int], offsets: Sequence[int],
                timestamps_ms: Sequence[int], settings: ParserSettings) -> ParsedBatch:
    """Parse raw Kafka values; ``partitions``/``offsets``/``timestamps_ms`` locate each line.

    The watch minutes and recommendation requests of the common shape are parsed by Arrow
    kernels (:func:`movierec_core.batch.parse_lines`); every other line by the reference
    parser."""
    batch = parse_lines(values, settings, recommendations=True)
    ids = line_ids(values)  # every line's event id (the few rejected lines' are unused)
    watches: list[WatchMinute] = []
    slow_watch_rows: list[int] = []
    ratings: list[Rating] = []
    rating_rows: list[int] = []
    accounts: list[AccountCreation] = []
    account_rows: list[int] = []
    recos: list[RecommendationRequest] = []
    reco_rows: list[int] = []
    reco_lines: list[str] = []
    rejected: list[Rejected] = []
    _watch, _rejection = WatchMinute, Rejection
    for i, event in batch.others:
        cls = type(event)
        if cls is _watch:
            watches.append(event)
            slow_watch_rows.append(i)
        elif cls is _rejection:
            rejected.append(Rejected(partitions[i], offsets[i], timestamps_ms[i], event))
        elif cls is RecommendationRequest:
            recos.append(event)
            reco_rows.append(i)
            reco_lines.append(values[i].decode("utf-8").rstrip("\r\n"))
        elif cls is Rating:
            ratings.append(event)
            rating_rows.append(i)
        else:
            accounts.append(event)
            account_rows.append(i)

    tables: dict[str, pa.Table] = {}
    if batch.watch_rows.size or watches:
        tables[WATCH_MINUTES] = _in_line_order(
            WATCH_MINUTES, ids, batch.watch_rows, batch.watch, slow_watch_rows, [
                pa.array([e.time for e in watches], pa.timestamp("us")),
                pa.array([e.user_id for e in watches], pa.int64()),
                pa.array([e.movie_id for e in watches], pa.string()),
                pa.array([e.minute for e in watches], pa.int32())])
    if ratings:
        tables[RATINGS] = pa.table([
            pa.array(ids[rating_rows], pa.int64()),
            pa.array([e.time for e in ratings], pa.timestamp("us")),
            pa.array([e.user_id for e in ratings], pa.int64()),
            pa.array([e.movie_id for e in ratings], pa.string()),
            pa.array([e.stars for e in ratings], pa.int16()),
        ], schema=SCHEMAS[RATINGS])
    if accounts:
        tables[ACCOUNT_CREATIONS] = pa.table([
            pa.array(ids[account_rows], pa.int64()),
            pa.array([e.time for e in accounts], pa.timestamp("us")),
            pa.array([e.user_id for e in accounts], pa.int64()),
        ], schema=SCHEMAS[ACCOUNT_CREATIONS])
    if recos or batch.reco_rows.size:
        tables[RECOMMENDATION_REQUESTS] = _in_line_order(
            RECOMMENDATION_REQUESTS, ids, batch.reco_rows, batch.reco, reco_rows, [
                pa.array([e.time for e in recos], pa.timestamp("us")),
                pa.array([e.user_id for e in recos], pa.int64()),
                pa.array([e.server for e in recos], pa.string()),
                pa.array([e.status for e in recos], pa.int16()),
                pa.array([list(e.movie_ids) for e in recos], pa.list_(pa.string())),
                pa.array([e.error for e in recos], pa.string()),
                pa.array([e.response_ms for e in recos], pa.int32()),
                pa.array(reco_lines, pa.string())])
    events: list[Event] = [*ratings, *accounts]
    user_ids: set[int] = set()
    movie_ids: set[str] = set()
    for table_name in (WATCH_MINUTES, RATINGS, ACCOUNT_CREATIONS, RECOMMENDATION_REQUESTS):
        table = tables.get(table_name)
        if table is not None:
            user_ids.update(pc.unique(table.column("user_id")).to_pylist())
            if "movie_id" in table.column_names:
                movie_ids.update(pc.unique(table.column("movie_id")).to_pylist())
    return ParsedBatch(tables, events, rejected, user_ids, movie_ids)


def _in_line_order(table_name: str, ids: np.ndarray, fast_rows: np.ndarray,
                   fast: pa.Table, slow_rows: list[int], slow_columns: list[pa.Array]) -> pa.Table:
    """One lake table of the kernel-parsed rows (``fast``, at batch indices ``fast_rows``) and
    those the reference parser took (``slow_columns`` at ``slow_rows``), in line order, each
    row's ``event_id`` the id of its raw line (``ids``, per batch index)."""
    schema = SCHEMAS[table_name]
    table = pa.table([pa.array(ids[fast_rows], pa.int64()), *fast.columns], schema=schema)
    if not slow_rows:
        return table
    slow = pa.table([pa.array(ids[slow_rows], pa.int64()), *slow_columns], schema=schema)
    if not fast_rows.size:
        return slow
    order = np.argsort(np.concatenate([fast_rows, np.asarray(slow_rows, np.int64)]),
                       kind="stable")
    return pa.concat_tables([table, slow]).take(pa.array(order))


def pseudonymise(parsed: ParsedBatch, pseudonyms) -> ParsedBatch:
    """The batch with every user id replaced by its pseudonym
    (:class:`movierec_core.pseudonym.Pseudonymizer`): the tables' ``user_id`` columns, the
    events for the online store, the id inside each logged recommendation line. The rejected
    lines stay as they came (the dead-letter topic keeps them until its retention)."""
    pid = pseudonyms.pid
    tables = {name: map_user_ids(name, table, pid) for name, table in parsed.tables.items()}
    events = [replace(e, user_id=pid(e.user_id)) for e in parsed.events]
    return ParsedBatch(tables, events, parsed.rejected, set(pseudonyms.pids(parsed.user_ids)),
                       parsed.movie_ids)


def map_user_ids(table_name: str, table: pa.Table,
                 new_id: Callable[[int], int | None]) -> pa.Table:
    """A lake table with its ``user_id`` column mapped by ``new_id`` (once per distinct id),
    the id inside each logged recommendation line with it; rows mapped to None are dropped.
    Serves ingestion (id → pseudonym) and ``ingestor/rekey.py`` (old → new key)."""
    users = table.column("user_id")
    distinct = pc.unique(users)
    mapped = pa.array([new_id(u) for u in distinct.to_pylist()], pa.int64())
    column = pc.take(mapped, pc.index_in(users, value_set=distinct))
    i = table.schema.get_field_index("user_id")
    table = table.set_column(i, table.schema.field(i), column)
    if mapped.null_count:
        table = table.filter(pc.is_valid(column))
    if table_name == RECOMMENDATION_REQUESTS:
        lines = [_with_user(line, u) for line, u in zip(table.column("line").to_pylist(),
                                                        table.column("user_id").to_pylist(),
                                                        strict=True)]
        j = table.schema.get_field_index("line")
        table = table.set_column(j, table.schema.field(j), pa.array(lines, pa.string()))
    return table


def _with_user(line: str, user: int) -> str:
    """``<time>,<user id>,<rest>`` with another user id (the line parsed, so it has that shape)."""
    time, _, rest = line.split(",", 2)
    return f"{time},{user},{rest}"
