"""Batch parsing of telemetry lines with Arrow compute kernels, equal to :func:`parse` line by line.

98 % of the stream is watch minutes of one rigid shape
(``<YYYY-MM-DDTHH:MM:SS[.ffffff]>,<digits>,GET /data/m/<id>/<digits>.mpg``). For a batch of raw
lines, one RE2 pass (``pyarrow.compute.extract_regex``, in C++) finds the lines of exactly that
shape whose every field is certainly valid: ASCII only, a movie id of printable characters
without ``/ , =``, at most 18 digits of user id and 9 of minute, at most six fractional digits,
a timestamp that survives a strptime → strftime round trip (no 30 February, no hour 24, no
leap second, no year 0), no longer than ``max_line_bytes``. Their columns are built by Arrow
kernels, with no Python object per line. **Every other line** — ratings, account creations,
recommendation requests, anything doubtful, every invalid line — goes through the reference
parser :func:`movierec_core.events.parse`, so the batch result is, line for line, what
``parse`` returns (``tests/movierec_core/test_batch.py`` checks that on every ``nasty`` kind,
fuzzed lines and hypothesis-generated events).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec_core.events import (
    DEFAULT_SETTINGS,
    Event,
    ParserSettings,
    Rejection,
    WatchMinute,
    parse,
)

# movie id: printable ASCII (0x21-0x7E) without ',' (0x2C), '/' (0x2F) or '=' (0x3D)
_ID = r"[!-+\-.0-<>-~]+"
WATCH_PATTERN = (r"^(?P<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})"
                 r"(?:\.(?P<frac>[0-9]{1,6}))?,(?P<user>[0-9]{1,18}),GET /data/m/"
                 rf"(?P<movie>{_ID})/(?P<minute>[0-9]{{1,9}})\.mpg(?:\r?\n)?$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_EPOCH = datetime(1970, 1, 1)


@dataclass
class BatchParse:
    """The lines of one batch, parsed.

    ``watch_rows``: indices (into the batch) of the watch minutes parsed by the kernels, and
    ``watch`` their columns (``time`` timestamp[us], ``user_id`` int64, ``movie_id`` string,
    ``minute`` int32), in batch order. ``others``: ``(index, event or rejection)`` for every
    other line, from the reference parser, in batch order.
    """

    size: int
    watch_rows: np.ndarray
    watch: pa.Table
    others: list[tuple[int, Event | Rejection]]

    def watch_events(self) -> Iterator[tuple[int, WatchMinute]]:
        """The kernel-parsed watch minutes as events (tests and small consumers)."""
        times = self.watch.column("time").cast(pa.int64()).to_numpy()
        users = self.watch.column("user_id").to_pylist()
        movies = self.watch.column("movie_id").to_pylist()
        minutes = self.watch.column("minute").to_pylist()
        for row, t, u, m, k in zip(self.watch_rows.tolist(), times.tolist(), users, movies,
                                   minutes, strict=True):
            yield row, WatchMinute(_from_us(t), u, m, k)

    def events(self) -> list[Event | Rejection]:
        """Every line's result in batch order: what ``[parse(v) for v in values]`` returns."""
        out: list[Event | Rejection | None] = [None] * self.size
        for row, event in self.watch_events():
            out[row] = event
        for row, event in self.others:
            out[row] = event
        return out  # type: ignore[return-value]


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


_WATCH_SCHEMA = pa.schema([("time", pa.timestamp("us")), ("user_id", pa.int64()),
                           ("movie_id", pa.string()), ("minute", pa.int32())])


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


def parse_lines(values: Sequence[bytes], settings: ParserSettings = DEFAULT_SETTINGS) -> BatchParse:
    """Parse raw lines (``bytes``); see the module's docstring."""
    n = len(values)
    if n == 0:
        return BatchParse(0, np.zeros(0, np.int64), _WATCH_SCHEMA.empty_table(), [])
    raw = _binary_array(values)
    fields = pc.extract_regex(raw, pattern=WATCH_PATTERN)  # null where the shape differs
    ok = pc.is_valid(fields)
    ok = pc.and_(ok, pc.less_equal(pc.binary_length(raw), settings.max_line_bytes))
    ts = pc.cast(pc.struct_field(fields, "ts"), pa.string())
    parsed = pc.strptime(ts, format=_TIME_FORMAT, unit="us", error_is_null=True)
    # strptime rolls 30 February over into March and a 60th second into the next minute:
    # the parsed fields must be the written ones (and datetime has no year 0)
    for component, start in ((pc.year, 0), (pc.month, 5), (pc.day, 8), (pc.hour, 11),
                             (pc.minute, 14), (pc.second, 17)):
        written = pc.cast(pc.utf8_slice_codeunits(ts, start, start + (4 if start == 0 else 2)),
                          pa.int64())
        ok = pc.and_kleene(ok, pc.equal(pc.cast(component(parsed), pa.int64()), written))
    ok = pc.and_kleene(ok, pc.invert(pc.starts_with(ts, "0000")))
    ok = pc.fill_null(ok, False)
    rows = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    if rows.size:
        take = pa.array(rows)
        f = pc.take(fields, take)
        frac = pc.fill_null(pc.cast(pc.struct_field(f, "frac"), pa.string()), "")
        micros = pc.cast(pc.if_else(pc.equal(frac, ""), "0", pc.utf8_rpad(frac, 6, "0")),
                         pa.int64())
        time = pc.add(pc.cast(pc.take(parsed, take), pa.int64()), micros).cast(pa.timestamp("us"))
        watch = pa.table([
            time,
            pc.cast(pc.cast(pc.struct_field(f, "user"), pa.string()), pa.int64()),
            pc.cast(pc.struct_field(f, "movie"), pa.string()),
            pc.cast(pc.cast(pc.struct_field(f, "minute"), pa.string()), pa.int32()),
        ], schema=_WATCH_SCHEMA)
    else:
        watch = _WATCH_SCHEMA.empty_table()
    if rows.size == n:
        others: list[tuple[int, Event | Rejection]] = []
    else:
        mask = np.ones(n, dtype=bool)
        mask[rows] = False
        others = [(i, parse(values[i], settings)) for i in np.flatnonzero(mask).tolist()]
    return BatchParse(n, rows, watch, others)
