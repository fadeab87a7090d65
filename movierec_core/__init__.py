"""movierec's contract package: event types, parser/formatter, shared configs and data layouts.

Every deployable (simulator, ingestor, trainer, model_server, experiments, drift) imports it;
it imports none of them.
"""

from movierec_core.events import (
    AccountCreation,
    Event,
    EventKind,
    ParserSettings,
    Rating,
    Reason,
    RecommendationRequest,
    Rejection,
    WatchMinute,
    format_event,
    format_time,
    is_valid_movie_id,
    parse,
)

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
