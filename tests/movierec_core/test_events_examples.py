"""Every example line of EVENTS.md parses to exact field values."""

from __future__ import annotations

from datetime import datetime

import pytest

from movierec_core import (
    AccountCreation,
    ParserSettings,
    Rating,
    Reason,
    RecommendationRequest,
    Rejection,
    WatchMinute,
    format_event,
    parse,
)


def test_watch_minute_example() -> None:
    event = parse("2025-03-02T14:07:33,48211,GET /data/m/the+lion+king+1994/57.mpg")
    assert event == WatchMinute(datetime(2025, 3, 2, 14, 7, 33), 48211, "the+lion+king+1994", 57)


def test_rating_example_with_fractional_seconds() -> None:
    event = parse("2025-03-02T14:09:02.41,48211,GET /rate/the+lion+king+1994=4")
    assert event == Rating(datetime(2025, 3, 2, 14, 9, 2, 410000), 48211, "the+lion+king+1994", 4)


def test_account_creation_example() -> None:
    assert parse("2025-03-02T14:10:00,990017,GET /create_account") == AccountCreation(
        datetime(2025, 3, 2, 14, 10, 0), 990017
    )


def test_recommendation_request_success_example() -> None:
    line = (
        "2025-03-02T14:11:12.004,48211,recommendation request rec-1.svc:8082, status 200, "
        "result: toy+story+1995, heat+1995, the+lion+king+1994, 87 ms"
    )
    assert parse(line) == RecommendationRequest(
        time=datetime(2025, 3, 2, 14, 11, 12, 4000),
        user_id=48211,
        server="rec-1.svc:8082",
        status=200,
        movie_ids=("toy+story+1995", "heat+1995", "the+lion+king+1994"),
        error="",
        response_ms=87,
    )


def test_recommendation_request_timeout_example() -> None:
    line = (
        "2025-03-02T14:11:13,48212,recommendation request rec-1.svc:8082, status 0, "
        "result: java.net.SocketTimeoutException: Read timed out, 600 ms"
    )
    assert parse(line) == RecommendationRequest(
        time=datetime(2025, 3, 2, 14, 11, 13),
        user_id=48212,
        server="rec-1.svc:8082",
        status=0,
        movie_ids=(),
        error="java.net.SocketTimeoutException: Read timed out",
        response_ms=600,
    )


def test_recommendation_request_500_with_commas_in_error_text() -> None:
    line = "2025-03-02T14:11:13,7,recommendation request r:1, status 500, result: boom, bang, 12 ms"
    event = parse(line)
    assert isinstance(event, RecommendationRequest)
    assert (event.status, event.error, event.response_ms) == (500, "boom, bang", 12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-02T14:07:33", datetime(2025, 3, 2, 14, 7, 33)),
        ("2025-03-02T14:07:33.5", datetime(2025, 3, 2, 14, 7, 33, 500000)),
        ("2025-03-02T14:07:33.123456", datetime(2025, 3, 2, 14, 7, 33, 123456)),
        ("2025-03-02T14:07:33.123456789", datetime(2025, 3, 2, 14, 7, 33, 123456)),
    ],
)
def test_timestamp_precisions(text: str, expected: datetime) -> None:
    event = parse(f"{text},1,GET /create_account")
    assert event == AccountCreation(expected, 1)


@pytest.mark.parametrize(
    "movie_id",
    ["the+shawshank+redemption+1994", "amelie+2001", "am\u00e9lie+2001", "a++b+1999", "tom+&+jerry+1992",
     "ocean's+eleven+2001", "star+wars:+episode+iv+1977", "mr.+smith+2005", "2001+a+space+odyssey+1968",
     "untitled+"],
)
def test_awkward_movie_ids_round_trip(movie_id: str) -> None:
    line = f"2025-03-02T14:07:33,5,GET /data/m/{movie_id}/0.mpg"
    event = parse(line)
    assert event == WatchMinute(datetime(2025, 3, 2, 14, 7, 33), 5, movie_id, 0)
    assert format_event(event) == line


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", Reason.EMPTY_LINE),
        (b"2025-03-02T14:07:33,48211", Reason.WRONG_FIELD_COUNT),
        (b"2025-03-02T14:07:33,48211,GET /data/m/the+lion+ki", Reason.BAD_MINUTE),
        (b"2025-03-02T14:07:33,abc,GET /create_account", Reason.BAD_USER_ID),
        (b"2025-03-02T14:07:33,-4,GET /create_account", Reason.BAD_USER_ID),
        (b"2025-02-30T14:07:33,4,GET /create_account", Reason.BAD_TIMESTAMP),
        (b"2025-03-02T14:07:33Z,4,GET /create_account", Reason.BAD_TIMESTAMP),
        (b"2025-03-02T14:07:33,4,GET /watch/x", Reason.UNKNOWN_REQUEST),
        (b"2025-03-02T14:07:33,4,GET /data/m/heat+1995/-3.mpg", Reason.NEGATIVE_MINUTE),
        (b"2025-03-02T14:07:33,4,GET /data/m/heat+1995/x.mpg", Reason.BAD_MINUTE),
        (b"2025-03-02T14:07:33,4,GET /rate/heat+1995=6", Reason.RATING_OUT_OF_RANGE),
        (b"2025-03-02T14:07:33,4,GET /rate/heat+1995=0", Reason.RATING_OUT_OF_RANGE),
        (b"2025-03-02T14:07:33,4,GET /rate/heat+1995=3.5", Reason.BAD_RATING),
        (b"2025-03-02T14:07:33,4,GET /rate/=3", Reason.EMPTY_MOVIE_ID),
        (b"2025-03-02T14:07:33,4,GET /data/m//3.mpg", Reason.EMPTY_MOVIE_ID),
        (b"2025-03-02T14:07:33,4,GET /data/m/a b/3.mpg", Reason.BAD_MOVIE_ID),
        (b"2025-03-02T14:07:33,4,GET /data/m/heat\xff/3.mpg", Reason.NON_UTF8),
        (b"2025-03-02T14:07:33,4,recommendation request x, status 200, result: a, b", Reason.BAD_RECOMMENDATION),
        (b"2025-03-02T14:07:33,4,recommendation request x, status ok, result: a, 1 ms", Reason.BAD_RECOMMENDATION),
        (b"2025-03-02T14:07:33,4,GET /data/m/" + b"x" * 2_000_000 + b"/1.mpg", Reason.LINE_TOO_LONG),
    ],
)
def test_invalid_lines_are_rejected_with_reason(line: bytes, reason: Reason) -> None:
    result = parse(line)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.line == line
    assert result.detail


def test_rating_scale_is_configurable() -> None:
    line = "2025-03-02T14:07:33,4,GET /rate/heat+1995=9"
    assert isinstance(parse(line), Rejection)
    assert parse(line, ParserSettings(rating_max=10)) == Rating(datetime(2025, 3, 2, 14, 7, 33), 4, "heat+1995", 9)


def test_trailing_newline_is_not_part_of_the_line() -> None:
    assert parse(b"2025-03-02T14:10:00,1,GET /create_account\r\n") == AccountCreation(
        datetime(2025, 3, 2, 14, 10), 1
    )
