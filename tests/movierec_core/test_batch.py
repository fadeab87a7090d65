"""The batch parser (Arrow kernels) returns, line for line, what the reference parser returns."""

from __future__ import annotations

import random
from datetime import datetime

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec_core import format_event, parse
from movierec_core.batch import parse_lines
from movierec_core.events import ParserSettings, RecommendationRequest, Rejection, WatchMinute
from movierec_core.invalid import InvalidKind, make_invalid
from tests.movierec_core.test_events_properties import events as event_strategy
from tests.movierec_core.test_fuzz import SEEDS, _mutate


def assert_same_as_reference(lines: list[bytes], cfg: ParserSettings | None = None) -> None:
    """With and without the recommendation kernels: every line's result is the reference's,
    and every line is in exactly one of the three parts."""
    cfg = cfg or ParserSettings()
    expected = [parse(line, cfg) for line in lines]
    for recommendations in (False, True):
        result = parse_lines(lines, cfg, recommendations=recommendations)
        assert result.events() == expected
        assert result.watch.num_rows == len(result.watch_rows)
        assert result.reco.num_rows == len(result.reco_rows)
        assert sorted([*result.watch_rows.tolist(), *result.reco_rows.tolist(),
                       *(i for i, _ in result.others)]) == list(range(len(lines)))


def test_the_common_shapes_take_the_kernels_and_equal_the_reference() -> None:
    lines = [b"2025-03-02T14:07:33,48211,GET /data/m/the+lion+king+1994/57.mpg",
             b"2025-03-02T14:07:33.5,007,GET /data/m/the+lion+king+1994/0.mpg\n",
             b"2025-03-02T14:07:33.123456,1,GET /data/m/a'b&c:d.e+(1999)/999999999.mpg\r\n",
             b"0001-01-01T00:00:00,999999999999999999,GET /data/m/x/1.mpg",
             b"9999-12-31T23:59:59.999999,2,GET /data/m/~!/3.mpg"]
    result = parse_lines(lines)
    assert result.watch_rows.tolist() == [0, 1, 2, 3, 4] and result.others == []
    assert result.watch.schema.field("time").type == pa.timestamp("us")
    assert result.events()[1] == WatchMinute(datetime(2025, 3, 2, 14, 7, 33, 500000), 7,
                                             "the+lion+king+1994", 0)
    assert_same_as_reference(lines)


def test_doubtful_lines_go_to_the_reference_parser() -> None:
    lines = [b"2025-03-02T14:07:33.1234567,1,GET /data/m/x/5.mpg",  # 7 fractional digits
             b"2025-02-30T14:07:33,1,GET /data/m/x/5.mpg",  # no such day
             b"2025-03-02T24:00:00,1,GET /data/m/x/5.mpg",  # hour 24
             b"2025-03-02T14:07:60,1,GET /data/m/x/5.mpg",  # leap second
             b"0000-03-02T14:07:33,1,GET /data/m/x/5.mpg",  # year 0
             b"2025-03-02T14:07:33,1234567890123456789,GET /data/m/x/5.mpg",  # 19 digits
             b"2025-03-02T14:07:33,1,GET /data/m/x/1234567890.mpg",  # 10-digit minute
             b"2025-03-02T14:07:33,1,GET /data/m/x/-5.mpg",
             "2025-03-02T14:07:33,1,GET /data/m/東京+2003/5.mpg".encode(),  # valid, other script
             b"2025-03-02T14:07:33,1,GET /data/m/x/5.mpg\r",
             b"2025-03-02T14:07:33,1,GET /data/m//5.mpg",
             b"2025-03-02T14:07:33,1,GET /data/m/a b/5.mpg",
             b"2025-03-02T14:07:33,1,GET /data/m/x/5.mpg\n\n",
             b"2025-03-02T14:09:02.41,48211,GET /rate/the+lion+king+1994=4"]
    result = parse_lines(lines)
    assert result.watch_rows.tolist() == []
    assert_same_as_reference(lines)
    assert isinstance(result.events()[8], WatchMinute)


def test_dates_at_the_edges_of_the_calendar_equal_the_reference() -> None:
    """The watch lines' times are computed from their digits: leap days (2000 and 2024 yes,
    1900 and 2023 no), the first and last representable instants, month 0 and day 0, 31 April,
    minute 60, before the epoch, every fraction length."""
    lines = [b"0001-01-01T00:00:00,0,GET /data/m/a/0.mpg",
             b"9999-12-31T23:59:59.999999,999999999999999999,GET /data/m/~/999999999.mpg\r\n",
             b"2024-02-29T12:00:00.5,1,GET /data/m/x/1.mpg\n",
             b"2023-02-29T12:00:00,1,GET /data/m/x/1.mpg",
             b"1900-02-29T12:00:00,1,GET /data/m/x/1.mpg",
             b"2000-02-29T12:00:00.000001,1,GET /data/m/x/1.mpg",
             b"1969-12-31T23:59:59.999999,1,GET /data/m/x/00.mpg",
             b"2025-00-10T00:00:00,1,GET /data/m/x/1.mpg",
             b"2025-01-00T00:00:00,1,GET /data/m/x/1.mpg",
             b"2025-04-31T00:00:00,1,GET /data/m/x/1.mpg",
             b"2025-12-31T23:60:00,1,GET /data/m/x/1.mpg",
             b"1582-10-10T00:00:00.0,01,GET /data/m/x/1.mpg"]
    lines += [b"2025-03-02T14:07:33." + b"1234567"[:k] + b",5,GET /data/m/y/2.mpg"
              for k in range(1, 7)]
    result = parse_lines(lines)
    assert result.watch_rows.tolist() == [0, 1, 2, 5, 6, 11, *range(12, 18)]
    assert_same_as_reference(lines)


def test_accented_movie_ids_take_the_kernels_and_other_scripts_the_reference_parser() -> None:
    """Letters of U+00A1-U+017F in a watch line's movie id take the fast path; the soft hyphen
    (not printable), a no-break space (whitespace), other scripts and broken UTF-8 do not."""
    fast = ["malèna+2000", "schuß++die", "ch\u00e2teau+de+ma+m\u00e8re", "\u00a1ay+carmela!",
            "\u0151s+\u017f", "\u00bf\u00c0\u00ff\u0100"]
    slow = ["soft\u00adhyphen", "no\u00a0break", "\u0180+2000", "東京+2003", "\u00ac\u0085x"]
    lines = [f"2025-03-02T14:07:33,1,GET /data/m/{m}/5.mpg".encode() for m in fast + slow]
    lines.append(b"2025-03-02T14:07:33,1,GET /data/m/caf\xc3/5.mpg")  # a cut sequence
    lines.append(b"2025-03-02T14:07:33,1,GET /data/m/caf\xc3\xa9\xa9/5.mpg")  # a stray byte
    result = parse_lines(lines)
    assert result.watch_rows.tolist() == list(range(len(fast)))
    assert result.watch.column("movie_id").to_pylist() == fast
    assert_same_as_reference(lines)
    rejected = [e for e in result.events() if isinstance(e, Rejection)]
    assert len(rejected) == 5  # soft hyphen, no-break space, U+0085, two broken sequences


def test_bytes_not_of_the_promised_shape_are_left_to_the_reference_parser() -> None:
    from movierec_core.batch import _watch_columns

    odd = pa.array([b"2025-03-02T14:07:33,1,GET /data/m/x,y/5.mpg"], pa.large_binary())
    assert _watch_columns(odd) is None


RECOMMENDATIONS = [
    b"2025-03-02T14:11:12.004,48211,recommendation request rec-1.svc:8082, status 200, "
    b"result: toy+story+1995, heat+1995, the+lion+king+1994, 87 ms",
    b"2025-03-02T14:11:13,48212,recommendation request rec-1.svc:8082, status 0, "
    b"result: java.net.SocketTimeoutException: Read timed out, 600 ms\n",
    b"2025-03-02T14:11:13,1,recommendation request s, status 500, result: a, b, c, 12 ms\r\n",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: , 3 ms",  # no ids
    b"2025-03-02T14:11:13,1,recommendation request s, status 503, result: , 3 ms",  # no text
    b"2025-03-02T14:11:13,1,recommendation request s, status 007, result: x, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a'b&c:d.e+(1999), 0 ms",
    # the fields are read from the line's commas: an error text that looks like more fields
    b"2024-02-29T23:59:59.5,7,recommendation request s, status 502, "
    b"result: bad gateway, status 200, result: x, 5 ms, 999999999 ms",
    b"2025-03-02T14:11:13,000123,recommendation request s-2, status 404, result: x,y, 1 ms",
]
DOUBTFUL_RECOMMENDATIONS = [
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a,b, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a, , b, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a,  b, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a/b, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a=b, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: caf\xc3\xa9, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 0, result: d\xc3\xa9lai, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 2000, result: a, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status , result: a, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a, -3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a, 1234567890 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a, 3 ms\n\n",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a, 3 ms\r",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a, 3ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: a 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s,t, status 200, result: a, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s t, status 200, result: a, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request , status 200, result: a, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 200, result:a, 3 ms",
    b"2025-02-30T14:11:13,1,recommendation request s, status 200, result: a, 3 ms",
    b"2025-03-02T14:11:13.1234567,1,recommendation request s, status 200, result: a, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation request s, status 0, result: a\tb, 3 ms",
    b"2025-03-02T14:11:13,1,recommendation  request s, status 200, result: a, 3 ms",
]


def test_recommendation_requests_take_the_kernels_and_equal_the_reference() -> None:
    result = parse_lines(RECOMMENDATIONS, recommendations=True)
    assert result.reco_rows.tolist() == list(range(len(RECOMMENDATIONS)))
    assert result.others == []
    events = result.events()
    assert events[0] == RecommendationRequest(
        datetime(2025, 3, 2, 14, 11, 12, 4000), 48211, "rec-1.svc:8082", 200,
        ("toy+story+1995", "heat+1995", "the+lion+king+1994"), "", 87)
    assert events[2].error == "a, b, c" and events[2].movie_ids == ()
    assert result.reco.column("line").to_pylist()[1].endswith("600 ms")
    assert events[7] == RecommendationRequest(
        datetime(2024, 2, 29, 23, 59, 59, 500000), 7, "s", 502, (),
        "bad gateway, status 200, result: x, 5 ms", 999999999)
    assert (events[8].error, events[8].user_id, events[8].server) == ("x,y", 123, "s-2")
    assert_same_as_reference(RECOMMENDATIONS)
    # among watch minutes and other lines, in any order, as one batch
    mixed = [line for pair in zip(RECOMMENDATIONS, reversed(RECOMMENDATIONS), strict=True)
             for line in (pair[0], b"2025-03-02T14:07:33,1,GET /data/m/x/5.mpg", pair[1])]
    assert_same_as_reference(mixed + DOUBTFUL_RECOMMENDATIONS)


def test_doubtful_recommendation_requests_go_to_the_reference_parser() -> None:
    result = parse_lines(DOUBTFUL_RECOMMENDATIONS, recommendations=True)
    assert result.reco_rows.tolist() == []
    assert_same_as_reference(DOUBTFUL_RECOMMENDATIONS)


def test_the_line_length_limit_holds_on_the_fast_path() -> None:
    line = b"2025-03-02T14:07:33,1,GET /data/m/" + b"x" * 200 + b"/5.mpg"
    reco = (b"2025-03-02T14:11:13,1,recommendation request s, status 200, result: "
            + b", ".join([b"x" * 30] * 5) + b", 3 ms")
    cfg = ParserSettings(max_line_bytes=100)
    result = parse_lines([line, reco], cfg, recommendations=True)
    assert result.watch_rows.tolist() == [] and result.reco_rows.tolist() == []
    assert all(isinstance(e, Rejection) for e in result.events())
    assert_same_as_reference([line, reco], cfg)


def test_every_invalid_kind_is_rejected_like_the_reference() -> None:
    rng = random.Random(3)
    lines = [make_invalid(kind, rng, user_id=rng.randrange(10**6))
             for kind in InvalidKind if kind is not InvalidKind.HUGE_LINE for _ in range(100)]
    assert_same_as_reference(lines)


def test_fuzzed_lines_equal_the_reference() -> None:
    rng = random.Random(20261201)
    lines = []
    for i in range(30_000):
        if i % 3 == 0:
            lines.append(rng.choice(SEEDS))
        elif i % 3 == 1:
            lines.append(_mutate(rng, rng.choice(SEEDS)))
        else:
            lines.append(rng.randbytes(rng.randrange(90)))
    assert_same_as_reference(lines)


@settings(max_examples=200)
@given(st.lists(event_strategy, max_size=40))
def test_formatted_events_round_trip_through_the_batch_parser(batch) -> None:
    lines = [format_event(e).encode("utf-8") for e in batch]
    assert parse_lines(lines).events() == batch
    assert parse_lines(lines, recommendations=True).events() == batch


def test_an_empty_batch() -> None:
    result = parse_lines([])
    assert result.events() == [] and result.watch.num_rows == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text("0123456789", max_size=18), st.text("ab,/", max_size=3)),
                max_size=30))
def test_decimals_reads_every_span_like_int(fields) -> None:
    """The columns' digit reader (one right-aligned gather for spans of any width, empty ones
    included) gives what ``int`` gives for each span."""
    import numpy as np

    from movierec_core.batch import _decimals

    data, starts, stops = b"", [], []
    for digits, filler in fields:
        data += filler.encode()
        starts.append(len(data))
        data += digits.encode()
        stops.append(len(data))
    got = _decimals(np.frombuffer(data, np.uint8), np.array(starts, np.int64),
                    np.array(stops, np.int64))
    assert got.tolist() == [int(d) if d else 0 for d, _ in fields]
