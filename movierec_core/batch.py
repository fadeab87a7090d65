"""Batch parsing of telemetry lines with Arrow compute kernels, equal to :func:`parse` line by line.

98 % of the stream is watch minutes of one rigid shape
(``<YYYY-MM-DDTHH:MM:SS[.ffffff]>,<digits>,GET /data/m/<id>/<digits>.mpg``). For a batch of raw
lines, one RE2 pass (``pyarrow.compute.extract_regex``, in C++) finds the lines of exactly that
shape whose every field is certainly valid: ASCII only, a movie id of printable characters
without ``/ , =``, at most 18 digits of user id and 9 of minute, at most six fractional digits,
a timestamp that survives a strptime → strftime round trip (no 30 February, no hour 24, no
leap second, no year 0), no longer than ``max_line_bytes``. Their columns are built by Arrow
kernels, with no Python object per line. With ``recommendations=True`` (the ingestor) a second
pass does the same for the recommendation-request lines of the common shape (ASCII, a server
name without spaces or commas, a status of at most three digits, for status 200 a result of
valid movie ids separated by ``", "``, otherwise any printable ASCII error text).
**Every other line** — ratings, account creations, anything doubtful, every invalid line — goes
through the reference parser :func:`movierec_core.events.parse`, so the batch result is, line for line, what
``parse`` returns (``tests/movierec_core/test_batch.py`` checks that on every ``nasty`` kind,
fuzzed lines and hypothesis-generated events).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec_core.events import (
    DEFAULT_SETTINGS,
    Event,
    ParserSettings,
    RecommendationRequest,
    Rejection,
    WatchMinute,
    parse,
)

# movie id: printable ASCII (0x21-0x7E) without ',' (0x2C), '/' (0x2F) or '=' (0x3D)
_ID = r"[!-+\-.0-<>-~]+"
_TIME = (r"^(?P<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})"
         r"(?:\.(?P<frac>[0-9]{1,6}))?,(?P<user>[0-9]{1,18}),")
_WATCH_PREFIX = "GET /data/m/"
WATCH_PATTERN = (_TIME + rf"GET /data/m/(?P<movie>{_ID})/(?P<minute>[0-9]{{1,9}})\.mpg"
                 r"(?:\r?\n)?$")
RECOMMENDATION_PATTERN = (_TIME + r"recommendation request (?P<server>[!-+\--~]+), "
                          r"status (?P<status>[0-9]{1,3}), result: (?P<result>[ -~]*), "
                          r"(?P<ms>[0-9]{1,9}) ms(?:\r?\n)?$")
# a status-200 result the reference parser accepts: valid movie ids joined by ", " (or nothing)
_IDS = rf"^(?:{_ID}(?:, {_ID})*)?$"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_EPOCH = datetime(1970, 1, 1)


@dataclass
class BatchParse:
    """The lines of one batch, parsed.

    ``watch_rows``: indices (into the batch) of the watch minutes parsed by the kernels, and
    ``watch`` their columns (``time`` timestamp[us], ``user_id`` int64, ``movie_id`` string,
    ``minute`` int32), in batch order. ``reco_rows`` and ``reco`` the same for the
    recommendation requests the kernels parsed (only with ``recommendations=True``; columns of
    the lake's ``recommendation_requests`` but ``event_id``). ``others``: ``(index, event or
    rejection)`` for every other line, from the reference parser, in batch order.
    """

    size: int
    watch_rows: np.ndarray
    watch: pa.Table
    others: list[tuple[int, Event | Rejection]]
    reco_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reco: pa.Table = field(default_factory=lambda: _RECO_SCHEMA.empty_table())

    def watch_events(self) -> Iterator[tuple[int, WatchMinute]]:
        """The kernel-parsed watch minutes as events (tests and small consumers)."""
        times = self.watch.column("time").cast(pa.int64()).to_numpy()
        users = self.watch.column("user_id").to_pylist()
        movies = self.watch.column("movie_id").to_pylist()
        minutes = self.watch.column("minute").to_pylist()
        for row, t, u, m, k in zip(self.watch_rows.tolist(), times.tolist(), users, movies,
                                   minutes, strict=True):
            yield row, WatchMinute(_from_us(t), u, m, k)

    def reco_events(self) -> Iterator[tuple[int, RecommendationRequest]]:
        """The kernel-parsed recommendation requests as events."""
        times = self.reco.column("time").cast(pa.int64()).to_numpy()
        columns = [self.reco.column(c).to_pylist()
                   for c in ("user_id", "server", "status", "movie_ids", "error", "response_ms")]
        for row, t, u, server, status, movies, error, ms in zip(
                self.reco_rows.tolist(), times.tolist(), *columns, strict=True):
            yield row, RecommendationRequest(_from_us(t), u, server, status, tuple(movies), error,
                                             ms)

    def events(self) -> list[Event | Rejection]:
        """Every line's result in batch order: what ``[parse(v) for v in values]`` returns."""
        out: list[Event | Rejection | None] = [None] * self.size
        for row, event in self.watch_events():
            out[row] = event
        for row, event in self.reco_events():
            out[row] = event
        for row, event in self.others:
            out[row] = event
        return out  # type: ignore[return-value]


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


_WATCH_SCHEMA = pa.schema([("time", pa.timestamp("us")), ("user_id", pa.int64()),
                           ("movie_id", pa.string()), ("minute", pa.int32())])
_RECO_SCHEMA = pa.schema([("time", pa.timestamp("us")), ("user_id", pa.int64()),
                          ("server", pa.string()), ("status", pa.int16()),
                          ("movie_ids", pa.list_(pa.string())), ("error", pa.string()),
                          ("response_ms", pa.int32()), ("line", pa.string())])


def _binary_array(values: Sequence[bytes]) -> pa.Array:
    """One Arrow binary array over the lines without a Python object per element: their
    bytes joined once, the offsets from their lengths (``pa.array`` of a list of ``bytes``
    costs about as much as parsing them)."""
    if not all(type(v) is bytes for v in values):
        return pa.array([bytes(v) if not isinstance(v, str) else v.encode("utf-8", "surrogatepass")
                         for v in values], pa.large_binary())
    lengths = np.fromiter(map(len, values), np.int64, len(values))
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.large_binary(), len(values),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))])


def _valid_rows(raw: pa.Array, pattern: str, settings: ParserSettings,
                fields_of: Callable[[pa.Array], dict[str, pa.Array]]
                ) -> tuple[np.ndarray, dict[str, pa.Array], pa.Array]:
    """The rows of ``raw`` that match ``pattern`` (which starts with ``_TIME``), are no longer
    than ``max_line_bytes`` and carry a timestamp that survives the round trip; with the
    fields of those rows (``fields_of`` of the matching lines: ``ts``, ``frac`` and the
    pattern's others, binary) and their times (timestamp[us], the fraction added)."""
    ok = pc.and_(pc.match_substring_regex(raw, pattern),  # the DFA, no captures: fast
                 pc.less_equal(pc.binary_length(raw), settings.max_line_bytes))
    rows = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    if not rows.size:
        return rows, {}, pa.array([], pa.timestamp("us"))
    fields = fields_of(raw.take(pa.array(rows)))
    ts = pc.cast(fields["ts"], pa.string())
    parsed = pc.strptime(ts, format=_TIME_FORMAT, unit="us", error_is_null=True)
    # strptime rolls 30 February over into March and a 60th second into the next minute:
    # the parsed fields must be the written ones (and datetime has no year 0)
    ok = pc.is_valid(parsed)
    for component, start in ((pc.year, 0), (pc.month, 5), (pc.day, 8), (pc.hour, 11),
                             (pc.minute, 14), (pc.second, 17)):
        written = pc.cast(pc.utf8_slice_codeunits(ts, start, start + (4 if start == 0 else 2)),
                          pa.int64())
        ok = pc.and_kleene(ok, pc.equal(pc.cast(component(parsed), pa.int64()), written))
    ok = pc.fill_null(pc.and_kleene(ok, pc.invert(pc.starts_with(ts, "0000"))), False)
    if not pc.all(ok).as_py():
        keep = pa.array(np.flatnonzero(ok.to_numpy(zero_copy_only=False)))
        rows = rows[keep.to_numpy()]
        fields = {name: pc.take(column, keep) for name, column in fields.items()}
        parsed = pc.take(parsed, keep)
    frac = pc.fill_null(pc.cast(fields["frac"], pa.string()), "")
    micros = pc.cast(pc.if_else(pc.equal(frac, ""), "0", pc.utf8_rpad(frac, 6, "0")), pa.int64())
    time = pc.add(pc.cast(parsed, pa.int64()), micros).cast(pa.timestamp("us"))
    return rows, fields, time


def _watch_fields(lines: pa.Array) -> dict[str, pa.Array]:
    """The fields of lines known to match ``WATCH_PATTERN``, by splitting (a capturing regex
    costs about five times more): exactly two commas before the request, none in it; the
    movie id holds no ``/``; the minute is digits before ``.mpg``."""
    parts = pc.split_pattern(lines, b",", max_splits=2)
    when = pc.list_element(parts, 0)
    path = pc.split_pattern(pc.binary_slice(pc.list_element(parts, 2), len(_WATCH_PREFIX),
                                            1 << 31), b"/", max_splits=1, reverse=True)
    return {"ts": pc.binary_slice(when, 0, 19), "frac": pc.binary_slice(when, 20, 27),
            "user": pc.list_element(parts, 1), "movie": pc.list_element(path, 0),
            "minute": pc.list_element(pc.split_pattern(pc.list_element(path, 1), b".",
                                                       max_splits=1), 0)}


def _regex_fields(pattern: str) -> Callable[[pa.Array], dict[str, pa.Array]]:
    """The named groups of ``pattern`` (a capturing regex, for the rarer shapes)."""
    def fields_of(lines: pa.Array) -> dict[str, pa.Array]:
        struct = pc.extract_regex(lines, pattern=pattern)
        return {struct.type.field(i).name: struct.field(i) for i in range(struct.type.num_fields)}
    return fields_of


def _digits_field(fields: dict[str, pa.Array], name: str, type_: pa.DataType) -> pa.Array:
    return pc.cast(pc.cast(fields[name], pa.string()), type_)


def _recommendations(raw: pa.Array, candidates: np.ndarray, settings: ParserSettings
                     ) -> tuple[np.ndarray, pa.Table]:
    """The recommendation requests of the common shape among rows ``candidates`` of ``raw``."""
    sub = raw.take(pa.array(candidates))
    # a cheap prefilter: only lines that name the request kind go through the full pattern
    maybe = np.flatnonzero(pc.match_substring(sub, ",recommendation request ").to_numpy(
        zero_copy_only=False))
    if not maybe.size:
        return np.zeros(0, np.int64), _RECO_SCHEMA.empty_table()
    sub = sub.take(pa.array(maybe))
    rows, f, time = _valid_rows(sub, RECOMMENDATION_PATTERN, settings,
                                _regex_fields(RECOMMENDATION_PATTERN))
    if rows.size:
        result = pc.cast(f["result"], pa.string())
        status = _digits_field(f, "status", pa.int16())
        ok = pc.fill_null(pc.or_(pc.not_equal(status, 200),
                                 pc.match_substring_regex(result, _IDS)), False)
        keep = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
        if keep.size < rows.size:  # a status-200 result the reference rejects: it says why
            take = pa.array(keep)
            rows, time = rows[keep], pc.take(time, take)
            f = {name: pc.take(column, take) for name, column in f.items()}
            result, status = pc.take(result, take), pc.take(status, take)
    if not rows.size:
        return np.zeros(0, np.int64), _RECO_SCHEMA.empty_table()
    listed = pc.and_(pc.equal(status, 200), pc.not_equal(result, ""))
    ids = pc.split_pattern(pc.if_else(listed, result, pa.scalar(None, pa.string())), ", ")
    ids = pc.if_else(listed, ids, pa.scalar([], pa.list_(pa.string())))
    error = pc.if_else(pc.equal(status, 200), "", result)
    line = pc.utf8_rtrim(pc.cast(sub.take(pa.array(rows)), pa.string()), characters="\r\n")
    table = pa.table([time, _digits_field(f, "user", pa.int64()),
                      pc.cast(f["server"], pa.string()), status, ids, error,
                      _digits_field(f, "ms", pa.int32()), line], schema=_RECO_SCHEMA)
    return candidates[maybe[rows]], table


def parse_lines(values: Sequence[bytes], settings: ParserSettings = DEFAULT_SETTINGS,
                recommendations: bool = False) -> BatchParse:
    """Parse raw lines (``bytes``); see the module's docstring."""
    n = len(values)
    if n == 0:
        return BatchParse(0, np.zeros(0, np.int64), _WATCH_SCHEMA.empty_table(), [])
    raw = _binary_array(values)
    rows, f, time = _valid_rows(raw, WATCH_PATTERN, settings, _watch_fields)
    if rows.size:
        watch = pa.table([time, _digits_field(f, "user", pa.int64()),
                          pc.cast(f["movie"], pa.string()),
                          _digits_field(f, "minute", pa.int32())], schema=_WATCH_SCHEMA)
    else:
        watch = _WATCH_SCHEMA.empty_table()
    if rows.size == n:
        return BatchParse(n, rows, watch, [])
    mask = np.ones(n, dtype=bool)
    mask[rows] = False
    rest = np.flatnonzero(mask)
    reco_rows, reco = np.zeros(0, np.int64), _RECO_SCHEMA.empty_table()
    if recommendations:
        reco_rows, reco = _recommendations(raw, rest, settings)
        if reco_rows.size:
            mask[reco_rows] = False
            rest = np.flatnonzero(mask)
    others = [(i, parse(values[i], settings)) for i in rest.tolist()]
    return BatchParse(n, rows, watch, others, reco_rows, reco)
