"""The invalid-line kinds of EVENTS.md, as generators: fault injection (simulator), fuzzing, tests.

Each :class:`InvalidKind` turns a valid contract line into an invalid one of that kind, and
names the :class:`~movierec_core.events.Reason` the parser must give it. Duplicated deliveries
are not a line shape (the parser sees one line at a time); consumers detect them.
"""

from __future__ import annotations

import random
from enum import StrEnum

from movierec_core.events import Reason


class InvalidKind(StrEnum):
    TRUNCATED = "truncated"
    WRONG_FIELD_COUNT = "wrong_field_count"
    NON_INTEGER_USER = "non_integer_user"
    BAD_TIMESTAMP = "bad_timestamp"
    UNKNOWN_REQUEST = "unknown_request"
    NEGATIVE_MINUTE = "negative_minute"
    RATING_OUT_OF_SCALE = "rating_out_of_scale"
    EMPTY_MOVIE_ID = "empty_movie_id"
    NON_UTF8 = "non_utf8"
    HUGE_LINE = "huge_line"


# The reasons the parser may give each kind (truncation can land anywhere in a line).
EXPECTED_REASONS: dict[InvalidKind, frozenset[Reason]] = {
    InvalidKind.TRUNCATED: frozenset(Reason) - {Reason.DUPLICATE, Reason.NON_UTF8, Reason.LINE_TOO_LONG},
    InvalidKind.WRONG_FIELD_COUNT: frozenset({Reason.WRONG_FIELD_COUNT}),
    InvalidKind.NON_INTEGER_USER: frozenset({Reason.BAD_USER_ID}),
    InvalidKind.BAD_TIMESTAMP: frozenset({Reason.BAD_TIMESTAMP}),
    InvalidKind.UNKNOWN_REQUEST: frozenset({Reason.UNKNOWN_REQUEST}),
    InvalidKind.NEGATIVE_MINUTE: frozenset({Reason.NEGATIVE_MINUTE}),
    InvalidKind.RATING_OUT_OF_SCALE: frozenset({Reason.RATING_OUT_OF_RANGE}),
    InvalidKind.EMPTY_MOVIE_ID: frozenset({Reason.EMPTY_MOVIE_ID}),
    InvalidKind.NON_UTF8: frozenset({Reason.NON_UTF8}),
    InvalidKind.HUGE_LINE: frozenset({Reason.LINE_TOO_LONG}),
}

_WATCH = "2025-03-02T14:07:33,{user},GET /data/m/{movie}/{minute}.mpg"
_BAD_TIMESTAMPS = ("2025-13-02T14:07:33", "2025-03-02 14:07:33", "yesterday", "2025-03-02T25:00:00",
                   "2025-03-02T14:07:33+01:00", "", "2025-03-02T14:07:33.")
_BAD_USERS = ("abc", "-5", "12.5", "", "4 2", "0x1F", "١٢")
_UNKNOWN = ("GET /data/x/foo/1.mpg", "POST /rate/heat+1995=4", "GET /recommend/5", "hello world",
            "GET /create_account?x=1")


def make_invalid(kind: InvalidKind, rng: random.Random, user_id: int = 1,
                 movie_id: str = "heat+1995", rating_max: int = 5,
                 max_line_bytes: int = 65536) -> bytes:
    """One invalid line of ``kind``, varied by ``rng``."""
    match kind:
        case InvalidKind.TRUNCATED:
            full = _WATCH.format(user=user_id, movie=movie_id, minute=rng.randint(0, 120))
            cut = rng.randint(1, len(full) - len(".mpg") - 1)
            return full[:cut].encode()
        case InvalidKind.WRONG_FIELD_COUNT:
            return rng.choice(("2025-03-02T14:07:33", f"2025-03-02T14:07:33,{user_id}",
                               "no commas here at all")).encode()
        case InvalidKind.NON_INTEGER_USER:
            return _WATCH.format(user=rng.choice(_BAD_USERS), movie=movie_id, minute=3).encode()
        case InvalidKind.BAD_TIMESTAMP:
            line = _WATCH.format(user=user_id, movie=movie_id, minute=3)
            return (rng.choice(_BAD_TIMESTAMPS) + line[len("2025-03-02T14:07:33"):]).encode()
        case InvalidKind.UNKNOWN_REQUEST:
            return f"2025-03-02T14:07:33,{user_id},{rng.choice(_UNKNOWN)}".encode()
        case InvalidKind.NEGATIVE_MINUTE:
            return _WATCH.format(user=user_id, movie=movie_id, minute=-rng.randint(1, 500)).encode()
        case InvalidKind.RATING_OUT_OF_SCALE:
            stars = rng.choice((0, rating_max + 1, rating_max + rng.randint(2, 50), -1))
            return f"2025-03-02T14:09:02,{user_id},GET /rate/{movie_id}={stars}".encode()
        case InvalidKind.EMPTY_MOVIE_ID:
            return rng.choice((_WATCH.format(user=user_id, movie="", minute=7),
                               f"2025-03-02T14:09:02,{user_id},GET /rate/=4")).encode()
        case InvalidKind.NON_UTF8:
            line = _WATCH.format(user=user_id, movie=movie_id, minute=3).encode()
            at = rng.randint(0, len(line))
            return line[:at] + rng.choice((b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80\x80")) + line[at:]
        case InvalidKind.HUGE_LINE:
            pad = "x" * (max_line_bytes + rng.randint(1, 1 << 20))
            return _WATCH.format(user=user_id, movie=movie_id + pad, minute=3).encode()
    raise ValueError(kind)
