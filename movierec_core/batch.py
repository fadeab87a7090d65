"""Batch parsing of telemetry lines with Arrow compute kernels, equal to :func:`parse` line by line.

98 % of the stream is watch minutes of one rigid shape
(``<YYYY-MM-DDTHH:MM:SS[.ffffff]>,<digits>,GET /data/m/<id>/<digits>.mpg``). For a batch of raw
lines, one RE2 pass (``pyarrow.compute.match_substring_regex``, a DFA in C++) finds the lines
of exactly that shape whose every field is certainly valid: a movie id of printable ASCII
without ``/ , =`` or letters of U+00A1-U+017F (not the soft hyphen), at most 18 digits of user
id and 9 of minute, at most six fractional digits, no longer than ``max_line_bytes``. Their
columns are read from their bytes in numpy (``_watch_columns``: commas, slashes, digits), with
no Python object per line; a date and time ``datetime`` would refuse (30 February, hour 24,
second 60, year 0) sends the line to the reference parser. With ``recommendations=True`` (the
ingestor) a second pass does the same, with Arrow kernels, for the recommendation-request lines
of the common shape (ASCII, a server name without spaces or commas, a status of at most three
digits, for status 200 a result of valid movie ids separated by ``", "``, otherwise any
printable ASCII error text).
**Every other line** — ratings, account creations, anything doubtful, every invalid line — goes
through the reference parser :func:`movierec_core.events.parse`, so the batch result is, line for line, what
``parse`` returns (``tests/movierec_core/test_batch.py`` checks that on every ``nasty`` kind,
fuzzed lines and hypothesis-generated events).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
# the watch lines' movie ids may also hold the letters of U+00A1-U+017F but the soft hyphen
# (U+00AD, not printable), as their UTF-8 bytes (Arrow matches binary values byte by byte):
# the accented titles of real catalogues, 0.5 % of the bench's lines
_WATCH_ID = r"(?:[!-+\-.0-<>-~]|\xC2[\xA1-\xAC\xAE-\xBF]|[\xC3-\xC5][\x80-\xBF])+"
WATCH_PATTERN = (_TIME + rf"GET /data/m/(?P<movie>{_WATCH_ID})/(?P<minute>[0-9]{{1,9}})\.mpg"
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


def _valid_rows(raw: pa.Array, pattern: str, settings: ParserSettings
                ) -> tuple[np.ndarray, dict[str, pa.Array], pa.Array]:
    """The rows of ``raw`` that match ``pattern`` (a capturing regex starting with ``_TIME``),
    are no longer than ``max_line_bytes`` and carry a timestamp that survives the round trip;
    with those rows' named groups (binary) and their times (timestamp[us], the fraction
    added)."""
    struct = pc.extract_regex(raw, pattern=pattern)  # null where the shape differs
    ok = pc.fill_null(pc.and_(pc.is_valid(struct),
                              pc.less_equal(pc.binary_length(raw), settings.max_line_bytes)),
                      False)
    rows = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    if not rows.size:
        return rows, {}, pa.array([], pa.timestamp("us"))
    struct = pc.take(struct, pa.array(rows))
    fields = {struct.type.field(i).name: struct.field(i) for i in range(struct.type.num_fields)}
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


_POW10 = 10 ** np.arange(19, dtype=np.int64)
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


def _spans(start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The index of every byte in the spans ``[start_i, stop_i)`` (in order), and their lengths."""
    lengths = stop - start
    before = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(start - before, lengths), lengths


def _decimals(data: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """The numbers written in ASCII digits at ``data[start_i:stop_i]`` (at most 18 digits; an
    empty span is 0): the spans right-aligned in one (n, widest) gather, the digits left of a
    span zeroed, one product with the powers of ten (a ragged gather and ``reduceat`` cost
    ~1.5 x as much for the ingestor's 1-7 digit fields)."""
    width = int((stop - start).max()) if len(start) else 0
    if width <= 0:
        return np.zeros(len(start), np.int64)
    at = stop[:, None] - np.arange(width, 0, -1)
    digits = data[np.maximum(at, 0)].astype(np.int64) - 48
    digits[at < start[:, None]] = 0
    return digits @ _POW10[width - 1::-1]


def _days_since_epoch(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days from 1970-01-01 of valid proleptic Gregorian dates (H. Hinnant's days_from_civil)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _watch_columns(lines: pa.Array) -> tuple[np.ndarray, pa.Table] | None:
    """The columns of lines known to match ``WATCH_PATTERN`` (a large_binary array whose values
    are back to back), read from their bytes in numpy: per line exactly two commas (after the
    time and the user id) and four slashes (the fourth ends the movie id), a 19-byte time, an
    optional fraction, digits before ``.mpg``. Returns which lines carry a real date and time
    (no 30 February, hour 24, second 60 or year 0: what ``datetime`` refuses) and their
    columns, or None should the bytes not have that shape."""
    n = len(lines)
    _, offsets, values = lines.buffers()
    off = np.frombuffer(offsets, np.int64)[lines.offset:lines.offset + n + 1]
    data = np.frombuffer(values, np.uint8)
    first, end = off[:-1], off[1:]
    body = data[off[0]:off[-1]]
    commas = np.flatnonzero(body == 44) + off[0]
    slashes = np.flatnonzero(body == 47) + off[0]
    if len(commas) != 2 * n or len(slashes) != 4 * n:
        return None
    commas, slashes = commas.reshape(n, 2), slashes.reshape(n, 4)
    newline = data[end - 1] == 10
    stop = end - newline
    stop = stop - (newline & (data[stop - 1] == 13))
    # int32 digits (the fields and their checks fit; the seconds are taken in int64 below)
    d = (data[first[:, None] + np.arange(19)] - np.uint8(48)).astype(np.int32)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 5] * 10 + d[:, 6], d[:, 8] * 10 + d[:, 9]
    hour, minute, second = d[:, 11] * 10 + d[:, 12], d[:, 14] * 10 + d[:, 15], d[:, 17] * 10 + d[:, 18]
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days_in_month = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + (leap & (month == 2))
    ok = ((year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= days_in_month)
          & (hour <= 23) & (minute <= 59) & (second <= 59))
    frac_start = first + 20
    frac_stop = np.where(data[first + 19] == 46, commas[:, 0], frac_start)  # '.'
    micros = _decimals(data, frac_start, frac_stop) * _POW10[6 - (frac_stop - frac_start)]
    days = _days_since_epoch(year.astype(np.int64), month, day)
    seconds = ((days * 24 + hour) * 60 + minute) * 60 + second
    idx, lengths = _spans(commas[:, 1] + 1 + len(_WATCH_PREFIX), slashes[:, 3])
    movie_offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=movie_offsets[1:])
    movies = pa.StringArray.from_buffers(n, pa.py_buffer(movie_offsets),
                                         pa.py_buffer(data[idx].tobytes()))
    table = pa.table([pa.array(seconds * 1_000_000 + micros, pa.timestamp("us")),
                      pa.array(_decimals(data, commas[:, 0] + 1, commas[:, 1]), pa.int64()),
                      movies,
                      pa.array(_decimals(data, slashes[:, 3] + 1, stop - 4), pa.int32())],
                     schema=_WATCH_SCHEMA)
    if not ok.all():
        table = table.filter(pa.array(ok))
    return ok, table


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
    rows, f, time = _valid_rows(sub, RECOMMENDATION_PATTERN, settings)
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
    ok = pc.and_(pc.match_substring_regex(raw, WATCH_PATTERN),  # the DFA, no captures: fast
                 pc.less_equal(pc.binary_length(raw), settings.max_line_bytes))
    rows = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    watch = _WATCH_SCHEMA.empty_table()
    if rows.size:
        columns = _watch_columns(raw.take(pa.array(rows)))
        if columns is None:  # not the shape the pattern promises: the reference parser decides
            rows = rows[:0]
        else:
            valid, watch = columns
            rows = rows[valid]
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
