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
from movierec_core.invalid import EXPECTED_REASONS, InvalidKind, make_invalid

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
    assert parse(line) == event
    assert parse(line.encode("utf-8")) == event


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = parse(data)
    assert isinstance(result, Rejection | WatchMinute | Rating | AccountCreation | RecommendationRequest)


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    parse(text)


def test_every_invalid_kind_gets_its_reason() -> None:
    rng = random.Random(7)
    for kind in InvalidKind:
        for _ in range(200):
            result = parse(make_invalid(kind, rng, user_id=rng.randrange(10**6)))
            assert isinstance(result, Rejection), kind
            assert result.reason in EXPECTED_REASONS[kind], (kind, result)
