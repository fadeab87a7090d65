"""Property-based round trips (hypothesis) for every event kind, and a fuzz run that must not raise."""

from __future__ import annotations

import random
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from movierec_core import (
    AccountCreation,
    Rating,
    RecommendationRequest,
    Rejection,
    WatchMinute,
    format_event,
    is_valid_movie_id,
    parse,
)
from movierec_core import events as events_module
from movierec_core.events import DEFAULT_SETTINGS, Reason
from movierec_core.invalid import EXPECTED_REASONS, InvalidKind, make_invalid

EVENT_TYPES = Rejection | WatchMinute | Rating | AccountCreation | RecommendationRequest


def parse_raising(line):
    """The parser's core, without parse()'s safety net (which turns any exception into a
    rejection): a property test on parse() could never see the parser raise."""
    return events_module._parse(line, DEFAULT_SETTINGS)

times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31))
user_ids = st.integers(min_value=0, max_value=10**18 - 1)
_id_alphabet = st.characters(
    blacklist_characters="/,= ", blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Cn", "Co", "Cf")
)
movie_ids = st.one_of(
    st.text(_id_alphabet, min_size=1, max_size=40),
    st.from_regex(r"[a-z0-9'&:.+]{1,30}\+(19|20)[0-9]{2}", fullmatch=True),
    st.from_regex(r"[a-z]{1,10}(\+\+|\+&\+|'|:|\.)[a-z]{0,10}\+?", fullmatch=True),
).filter(is_valid_movie_id)
small = st.integers(min_value=0, max_value=999_999_999)

watch = st.builds(WatchMinute, times, user_ids, movie_ids, small)
rating = st.builds(Rating, times, user_ids, movie_ids, st.integers(1, 5))
account = st.builds(AccountCreation, times, user_ids)
servers = st.from_regex(r"[a-z0-9.\-]{1,20}:[0-9]{1,5}", fullmatch=True)
error_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=60
)
reco_ok = st.builds(
    RecommendationRequest, times, user_ids, servers, st.just(200),
    st.lists(movie_ids, max_size=20).map(tuple), st.just(""), small,
)
reco_failed = st.builds(
    RecommendationRequest, times, user_ids, servers, st.sampled_from([0, 500, 503, 404]),
    st.just(()), error_text, small,
)
events = st.one_of(watch, rating, account, reco_ok, reco_failed)


@settings(max_examples=1500)
@given(events)
def test_format_then_parse_round_trips(event) -> None:
    line = format_event(event)
    assert parse_raising(line) == event
    assert parse_raising(line.encode("utf-8")) == event
    assert parse(line) == event


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = parse_raising(data)
    assert isinstance(result, EVENT_TYPES)
    if isinstance(result, Rejection):
        assert result.reason is not Reason.PARSER_ERROR and result.line == data


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    assert isinstance(parse_raising(text), EVENT_TYPES)


def test_every_invalid_kind_gets_its_reason() -> None:
    rng = random.Random(7)
    for kind in InvalidKind:
        for _ in range(200):
            result = parse_raising(make_invalid(kind, rng, user_id=rng.randrange(10**6)))
            assert isinstance(result, Rejection), kind
            assert result.reason in EXPECTED_REASONS[kind], (kind, result)


def test_a_parser_crash_is_dead_lettered_as_parser_error_with_the_exception(monkeypatch) -> None:
    def crash(line, settings):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(events_module, "_parse", crash)
    result = parse(b"2025-03-02T14:10:00,1,GET /create_account")
    assert result == Rejection(Reason.PARSER_ERROR, "parser error: ZeroDivisionError: boom",
                               b"2025-03-02T14:10:00,1,GET /create_account")
