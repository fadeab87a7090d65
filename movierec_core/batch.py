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
ingestor) a second pass does the same (RE2, then the fields from the bytes of the lines' commas
and Arrow's splits) for the recommendation-request lines of the common shape (ASCII, a server
name without spaces or commas, a status of at most three digits, for status 200 a result of
valid movie ids separated by ``", "``, otherwise any printable ASCII error text).
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
    if int(stop.min()) >= width:  # each span's row of the window ending at its stop
        digits = _windows(data, width)[stop - width].astype(np.int64) - 48
        digits[np.arange(width) < (width - (stop - start))[:, None]] = 0
    else:
        at = stop[:, None] - np.arange(width, 0, -1)
        digits = data[np.maximum(at, 0)].astype(np.int64) - 48
        digits[at < start[:, None]] = 0
    return digits @ _POW10[width - 1::-1]


def _windows(data: np.ndarray, width: int) -> np.ndarray:
    """A read-only (len - width + 1, width) view of ``data`` whose row i is ``data[i:i+width]``:
    gathering n of its rows takes n indices, not n x width."""
    return np.lib.stride_tricks.as_strided(data, shape=(len(data) - width + 1, width),
                                           strides=(data.strides[0], data.strides[0]),
                                           writeable=False)


def _days_since_epoch(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days from 1970-01-01 of valid proleptic Gregorian dates (H. Hinnant's days_from_civil)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _line_bytes(lines: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A large_binary array's bytes (uint8, the whole buffer), each line's first byte, its end
    and its end without the ``\\n`` or ``\\r\\n`` the patterns allow."""
    n = len(lines)
    _, offsets, values = lines.buffers()
    off = np.frombuffer(offsets, np.int64)[lines.offset:lines.offset + n + 1]
    data = np.frombuffer(values, np.uint8)
    first, end = off[:-1], off[1:]
    newline = data[end - 1] == 10
    stop = end - newline
    stop = stop - (newline & (data[stop - 1] == 13))
    return data, first, end, stop


def _times(data: np.ndarray, first: np.ndarray, comma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The times of lines of the ``_TIME`` shape starting at ``first`` (a 19-byte date and
    time, an optional fraction up to the ``comma``): which are real dates and times (no 30
    February, hour 24, second 60 or year 0: what ``datetime`` refuses), and the microseconds
    since the epoch (int64)."""
    # int32 digits (the fields and their checks fit; the seconds are taken in int64 below)
    d = (_windows(data, 19)[first] - np.uint8(48)).astype(np.int32)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 5] * 10 + d[:, 6], d[:, 8] * 10 + d[:, 9]
    hour, minute, second = d[:, 11] * 10 + d[:, 12], d[:, 14] * 10 + d[:, 15], d[:, 17] * 10 + d[:, 18]
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days_in_month = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + (leap & (month == 2))
    ok = ((year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= days_in_month)
          & (hour <= 23) & (minute <= 59) & (second <= 59))
    frac_start = first + 20
    frac_stop = np.where(data[first + 19] == 46, comma, frac_start)  # '.'
    micros = _decimals(data, frac_start, frac_stop) * _POW10[6 - (frac_stop - frac_start)]
    days = _days_since_epoch(year.astype(np.int64), month, day)
    seconds = ((days * 24 + hour) * 60 + minute) * 60 + second
    return ok, seconds * 1_000_000 + micros


def _strings(data: np.ndarray, start: np.ndarray, stop: np.ndarray) -> pa.Array:
    """The ASCII or UTF-8 bytes at ``data[start_i:stop_i]`` as one string array (one gather)."""
    idx, lengths = _spans(start, stop)
    offsets = np.zeros(len(start) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(len(start), pa.py_buffer(offsets),
                                       pa.py_buffer(data[idx].tobytes()))


def _watch_columns(lines: pa.Array) -> tuple[np.ndarray, pa.Table] | None:
    """The columns of lines known to match ``WATCH_PATTERN`` (a large_binary array whose values
    are back to back), read from their bytes in numpy: per line exactly two commas (after the
    time and the user id) and four slashes (the fourth ends the movie id), a 19-byte time, an
    optional fraction, digits before ``.mpg``. Returns which lines carry a real date and time
    (:func:`_times`) and their columns, or None should the bytes not have that shape."""
    n = len(lines)
    data, first, end, stop = _line_bytes(lines)
    body = data[first[0]:end[-1]]
    commas = np.flatnonzero(body == 44) + first[0]
    slashes = np.flatnonzero(body == 47) + first[0]
    if len(commas) != 2 * n or len(slashes) != 4 * n:
        return None
    commas, slashes = commas.reshape(n, 2), slashes.reshape(n, 4)
    ok, micros = _times(data, first, commas[:, 0])
    table = pa.table([pa.array(micros, pa.timestamp("us")),
                      pa.array(_decimals(data, commas[:, 0] + 1, commas[:, 1]), pa.int64()),
                      _strings(data, commas[:, 1] + 1 + len(_WATCH_PREFIX), slashes[:, 3]),
                      pa.array(_decimals(data, slashes[:, 3] + 1, stop - 4), pa.int32())],
                     schema=_WATCH_SCHEMA)
    if not ok.all():
        table = table.filter(pa.array(ok))
    return ok, table


_RECO_PREFIX = len("recommendation request ")
_STATUS_PREFIX = len(", status ")


def _recommendations(raw: pa.Array, candidates: np.ndarray, settings: ParserSettings
                     ) -> tuple[np.ndarray, pa.Table]:
    """The recommendation requests of the common shape among rows ``candidates`` of ``raw``.

    One RE2 pass without captures finds the lines of ``RECOMMENDATION_PATTERN``; their fields
    are then read from their bytes in numpy, like the watch lines': the first four commas end
    the time, the user id, the server (no commas in it) and the status, the result runs from
    ``", result: "`` to the line's last comma, the milliseconds from there to ``" ms"``."""
    empty = np.zeros(0, np.int64), _RECO_SCHEMA.empty_table()
    sub = raw.take(pa.array(candidates))
    # a cheap prefilter: only lines that name the request kind go through the full pattern
    maybe = np.flatnonzero(pc.match_substring(sub, ",recommendation request ").to_numpy(
        zero_copy_only=False))
    if not maybe.size:
        return empty
    sub = sub.take(pa.array(maybe))
    ok = pc.and_(pc.match_substring_regex(sub, RECOMMENDATION_PATTERN),
                 pc.less_equal(pc.binary_length(sub), settings.max_line_bytes))
    rows = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    if not rows.size:
        return empty
    lines = sub.take(pa.array(rows))
    data, first, end, stop = _line_bytes(lines)
    commas = np.flatnonzero(data[first[0]:end[-1]] == 44) + first[0]
    at = np.searchsorted(commas, first)  # each line's first comma
    c = commas[at[:, None] + np.arange(4)]  # time, user, server, status end at these
    last = commas[np.searchsorted(commas, end) - 1]  # ", <ms> ms"
    valid, micros = _times(data, first, c[:, 0])
    status = _decimals(data, c[:, 2] + _STATUS_PREFIX, c[:, 3])
    # the result: after the first ", result: ", before the last ", " (Arrow's splits copy the
    # ~400-byte lines several times faster than a gather of their bytes)
    line = pc.utf8_rtrim(pc.cast(lines, pa.string()), characters="\r\n")
    rest = pc.list_element(pc.split_pattern(line, ", result: ", max_splits=1), 1)
    result = pc.list_element(pc.split_pattern(rest, ", ", max_splits=1, reverse=True), 0)
    # a status-200 result the reference accepts: valid movie ids joined by ", " (else it says why)
    valid &= (status != 200) | pc.fill_null(pc.match_substring_regex(result, _IDS),
                                            False).to_numpy(zero_copy_only=False)
    if not valid.all():
        keep = np.flatnonzero(valid)
        if not keep.size:
            return empty
        rows, stop, c, last = rows[keep], stop[keep], c[keep], last[keep]
        take = pa.array(keep)
        micros, status, result, line = (micros[keep], status[keep], result.take(take),
                                        line.take(take))
    status_200 = pa.array(status == 200)
    listed = pc.and_(status_200, pc.not_equal(result, ""))
    ids = pc.split_pattern(pc.if_else(listed, result, pa.scalar(None, pa.string())), ", ")
    ids = pc.if_else(listed, ids, pa.scalar([], pa.list_(pa.string())))
    table = pa.table([pa.array(micros, pa.timestamp("us")),
                      pa.array(_decimals(data, c[:, 0] + 1, c[:, 1]), pa.int64()),
                      _strings(data, c[:, 1] + 1 + _RECO_PREFIX, c[:, 2]),
                      pa.array(status, pa.int16()), ids,
                      pc.if_else(status_200, "", result),
                      pa.array(_decimals(data, last + 2, stop - 3), pa.int32()), line],
                     schema=_RECO_SCHEMA)
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
