"""Typed events for the telemetry contract of ../shared/EVENTS.md, with one parser and one formatter.

Every line is ``<time>,<userid>,<request>``. ``parse`` never raises: it returns an event or a
:class:`Rejection` carrying a machine-readable reason (one of :class:`Reason`). ``format_event``
produces a line that parses back to an equal event.

Documented rules where the contract leaves room:

* Timestamps carry any number of fractional digits; the event keeps microsecond precision
  (digits past the sixth are truncated, as ``datetime`` holds no more). The line itself is kept
  whole by the ingestor wherever bytes matter (dead letters, recommendation requests).
* User ids are ASCII digits, at most 18 of them (fits a signed 64-bit column); leading zeros
  are accepted and dropped (``007`` is user 7).
* Watch minutes are non-negative integers taken as given (0- or 1-based both occur).
* A trailing ``\\n`` / ``\\r\\n`` is not part of the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = [
    "AccountCreation",
    "Event",
    "EventKind",
    "ParserSettings",
    "Rating",
    "Reason",
    "RecommendationRequest",
    "Rejection",
    "WatchMinute",
    "format_event",
    "format_time",
    "is_valid_movie_id",
    "parse",
]


class EventKind(StrEnum):
    WATCH = "watch"
    RATE = "rate"
    ACCOUNT = "account"
    RECOMMEND = "recommend"


class Reason(StrEnum):
    """Why a line was rejected; stable strings, used as DLQ reason codes and metric labels."""

    NON_UTF8 = "non_utf8"
    LINE_TOO_LONG = "line_too_long"
    EMPTY_LINE = "empty_line"
    WRONG_FIELD_COUNT = "wrong_field_count"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_USER_ID = "bad_user_id"
    UNKNOWN_REQUEST = "unknown_request"
    EMPTY_MOVIE_ID = "empty_movie_id"
    BAD_MOVIE_ID = "bad_movie_id"
    BAD_MINUTE = "bad_minute"
    NEGATIVE_MINUTE = "negative_minute"
    BAD_RATING = "bad_rating"
    RATING_OUT_OF_RANGE = "rating_out_of_range"
    BAD_RECOMMENDATION = "bad_recommendation"
    PARSER_ERROR = "parser_error"  # the parser itself raised: a bug, dead-lettered with its type
    DUPLICATE = "duplicate"  # assigned by consumers (the parser sees one line at a time)


@dataclass(frozen=True, slots=True)
class WatchMinute:
    time: datetime
    user_id: int
    movie_id: str
    minute: int
    kind = EventKind.WATCH


@dataclass(frozen=True, slots=True)
class Rating:
    time: datetime
    user_id: int
    movie_id: str
    stars: int
    kind = EventKind.RATE


@dataclass(frozen=True, slots=True)
class AccountCreation:
    time: datetime
    user_id: int
    kind = EventKind.ACCOUNT


@dataclass(frozen=True, slots=True)
class RecommendationRequest:
    """What the service asked movierec and what it got.

    ``movie_ids`` holds the returned ids when ``status == 200``; otherwise it is empty and
    ``error`` holds the caller's error text.
    """

    time: datetime
    user_id: int
    server: str
    status: int
    movie_ids: tuple[str, ...]
    error: str
    response_ms: int
    kind = EventKind.RECOMMEND


Event = WatchMinute | Rating | AccountCreation | RecommendationRequest


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str
    line: bytes

    kind = None


@dataclass(frozen=True, slots=True)
class ParserSettings:
    rating_min: int = 1
    rating_max: int = 5
    max_line_bytes: int = 65536


DEFAULT_SETTINGS = ParserSettings()

_WATCH_PREFIX = "GET /data/m/"
_RATE_PREFIX = "GET /rate/"
_ACCOUNT_REQUEST = "GET /create_account"
_RECO_PREFIX = "recommendation request "
_FORBIDDEN_ID_CHARS = frozenset("/,=") | frozenset(
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_MAX_USER_ID_DIGITS = 18
_MAX_INT_DIGITS = 9  # minutes, ratings, status codes, response ms


def is_valid_movie_id(movie_id: str) -> bool:
    """Non-empty, no ``/ , =`` or whitespace (EVENTS.md); nothing else is assumed."""
    return bool(movie_id) and _FORBIDDEN_ID_CHARS.isdisjoint(movie_id) and movie_id.isprintable()


def _digits(text: str, limit: int = _MAX_INT_DIGITS) -> bool:
    return 0 < len(text) <= limit and text.isascii() and text.isdigit()


def _parse_time(text: str) -> datetime | None:
    # Strict shape YYYY-MM-DDTHH:MM:SS[.f+]; fromisoformat alone also takes dates, offsets, 'Z'...
    n = len(text)
    if n < 19 or text[4] != "-" or text[7] != "-" or text[10] != "T" or text[13] != ":" or text[16] != ":":
        return None
    if not (text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]).isdigit():
        return None
    if n > 19:
        frac = text[20:]
        if text[19] != "." or not frac or not frac.isascii() or not frac.isdigit():
            return None
        if len(frac) > 6:
            text = text[:26]
    if not text.isascii():
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _reject(reason: Reason, detail: str, line: str | bytes) -> Rejection:
    raw = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
    return Rejection(reason, detail, raw)


def parse(line: str | bytes, settings: ParserSettings = DEFAULT_SETTINGS) -> Event | Rejection:
    """Parse one telemetry line. Never raises; bad input yields a :class:`Rejection`."""
    try:
        return _parse(line, settings)
    except Exception as exc:  # defensive: a parser bug must dead-letter, not crash a consumer
        raw = line if isinstance(line, bytes) else str(line).encode("utf-8", "replace")
        return Rejection(Reason.PARSER_ERROR, f"parser error: {type(exc).__name__}: {exc}"[:200], raw)


def _parse(line: str | bytes, settings: ParserSettings) -> Event | Rejection:
    if isinstance(line, bytes | bytearray | memoryview):
        raw = bytes(line)
        if len(raw) > settings.max_line_bytes:
            return Rejection(Reason.LINE_TOO_LONG, f"{len(raw)} bytes > {settings.max_line_bytes}", raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection(Reason.NON_UTF8, f"invalid utf-8 at byte {exc.start}", raw)
    else:
        text = line
        if len(text) > settings.max_line_bytes:
            return _reject(Reason.LINE_TOO_LONG, f"{len(text)} chars > {settings.max_line_bytes}", text)
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if not text:
        return _reject(Reason.EMPTY_LINE, "empty line", line)
    parts = text.split(",", 2)
    if len(parts) != 3:
        return _reject(Reason.WRONG_FIELD_COUNT, f"{len(parts)} fields, expected 3", line)
    time_text, user_text, request = parts
    time = _parse_time(time_text)
    if time is None:
        return _reject(Reason.BAD_TIMESTAMP, f"unparseable timestamp {time_text[:40]!r}", line)
    if not _digits(user_text, _MAX_USER_ID_DIGITS):
        return _reject(Reason.BAD_USER_ID, f"user id {user_text[:40]!r} is not a non-negative integer", line)
    user_id = int(user_text)

    if request.startswith(_WATCH_PREFIX):
        movie_id, sep, minute_part = request[len(_WATCH_PREFIX):].rpartition("/")
        if not sep or not minute_part.endswith(".mpg"):
            return _reject(Reason.BAD_MINUTE, "watch request is not /data/m/<movie>/<minute>.mpg", line)
        if not movie_id:
            return _reject(Reason.EMPTY_MOVIE_ID, "empty movie id", line)
        if not is_valid_movie_id(movie_id):
            return _reject(Reason.BAD_MOVIE_ID, f"movie id {movie_id[:60]!r} has forbidden characters", line)
        minute_text = minute_part[:-4]
        if minute_text.startswith("-") and _digits(minute_text[1:]):
            return _reject(Reason.NEGATIVE_MINUTE, f"negative minute {minute_text}", line)
        if not _digits(minute_text):
            return _reject(Reason.BAD_MINUTE, f"minute {minute_text[:20]!r} is not an integer", line)
        return WatchMinute(time, user_id, movie_id, int(minute_text))

    if request.startswith(_RATE_PREFIX):
        movie_id, sep, stars_text = request[len(_RATE_PREFIX):].rpartition("=")
        if not sep:
            return _reject(Reason.BAD_RATING, "rating request is not /rate/<movie>=<stars>", line)
        if not movie_id:
            return _reject(Reason.EMPTY_MOVIE_ID, "empty movie id", line)
        if not is_valid_movie_id(movie_id):
            return _reject(Reason.BAD_MOVIE_ID, f"movie id {movie_id[:60]!r} has forbidden characters", line)
        negative = stars_text.startswith("-")
        if not _digits(stars_text[1:] if negative else stars_text):
            return _reject(Reason.BAD_RATING, f"rating {stars_text[:20]!r} is not an integer", line)
        stars = int(stars_text)
        if not settings.rating_min <= stars <= settings.rating_max:
            return _reject(
                Reason.RATING_OUT_OF_RANGE,
                f"rating {stars} outside {settings.rating_min}-{settings.rating_max}",
                line,
            )
        return Rating(time, user_id, movie_id, stars)

    if request == _ACCOUNT_REQUEST:
        return AccountCreation(time, user_id)

    if request.startswith(_RECO_PREFIX):
        return _parse_recommendation(time, user_id, request[len(_RECO_PREFIX):], line)

    return _reject(Reason.UNKNOWN_REQUEST, f"unknown request {request[:60]!r}", line)


def _parse_recommendation(
    time: datetime, user_id: int, body: str, line: str | bytes
) -> RecommendationRequest | Rejection:
    # <server>, status <code>, result: <ids or error text>, <ms> ms
    head = body.split(", ", 2)
    if len(head) != 3 or not head[0] or not head[1].startswith("status ") or not head[2].startswith("result: "):
        return _reject(Reason.BAD_RECOMMENDATION, "expected '<server>, status <n>, result: ..., <ms> ms'", line)
    server, status_part, rest = head
    status_text = status_part[len("status "):]
    if not _digits(status_text, 3):
        return _reject(Reason.BAD_RECOMMENDATION, f"status {status_text[:20]!r} is not an integer", line)
    result, sep, ms_part = rest[len("result: "):].rpartition(", ")
    if not sep:
        return _reject(Reason.BAD_RECOMMENDATION, "missing response time", line)
    if not ms_part.endswith(" ms") or not _digits(ms_part[:-3]):
        return _reject(Reason.BAD_RECOMMENDATION, f"response time {ms_part[:20]!r} is not '<n> ms'", line)
    status = int(status_text)
    response_ms = int(ms_part[:-3])
    if status != 200:
        return RecommendationRequest(time, user_id, server, status, (), result, response_ms)
    movie_ids = tuple(result.split(", ")) if result else ()
    for movie_id in movie_ids:
        if not is_valid_movie_id(movie_id):
            return _reject(Reason.BAD_RECOMMENDATION, f"result holds an invalid movie id {movie_id[:60]!r}", line)
    return RecommendationRequest(time, user_id, server, status, movie_ids, "", response_ms)


def format_time(time: datetime) -> str:
    return time.isoformat(timespec="microseconds" if time.microsecond else "seconds")


# The line templates of EVENTS.md, in one place: format_event and the simulator's batch
# formatting (which builds its time texts itself, for speed) both use these.
def watch_line(time_text: str, user_id: int, movie_id: str, minute: int) -> str:
    return f"{time_text},{user_id},GET /data/m/{movie_id}/{minute}.mpg"


def rating_line(time_text: str, user_id: int, movie_id: str, stars: int) -> str:
    return f"{time_text},{user_id},GET /rate/{movie_id}={stars}"


def account_line(time_text: str, user_id: int) -> str:
    return f"{time_text},{user_id},GET /create_account"


def recommendation_line(time_text: str, user_id: int, server: str, status: int,
                        movie_ids: Sequence[str], error: str, response_ms: int) -> str:
    result = ", ".join(movie_ids) if status == 200 else error
    return (f"{time_text},{user_id},recommendation request {server}, status {status}, "
            f"result: {result}, {response_ms} ms")


def format_event(event: Event) -> str:
    """The contract line for ``event`` (no trailing newline); ``parse`` returns an equal event."""
    t = format_time(event.time)
    match event:
        case WatchMinute():
            return watch_line(t, event.user_id, event.movie_id, event.minute)
        case Rating():
            return rating_line(t, event.user_id, event.movie_id, event.stars)
        case AccountCreation():
            return account_line(t, event.user_id)
        case RecommendationRequest():
            return recommendation_line(t, event.user_id, event.server, event.status,
                                       event.movie_ids, event.error, event.response_ms)
    raise TypeError(f"not an event: {event!r}")
