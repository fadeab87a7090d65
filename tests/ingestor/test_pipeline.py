"""parse_batch: lines to per-table columns and rejections (pure)."""

from __future__ import annotations

import random
import urllib.request
from datetime import datetime

from devstack.ports import free_port
from ingestor import metrics
from ingestor.pipeline import parse_batch
from movierec_core.events import (
    AccountCreation,
    ParserSettings,
    Rating,
    Reason,
    WatchMinute,
    format_event,
)
from movierec_core.invalid import EXPECTED_REASONS, InvalidKind, make_invalid
from movierec_core.lake import SCHEMAS, line_id

T = datetime(2025, 3, 2, 14, 7, 33)


def test_every_line_lands_in_exactly_one_place() -> None:
    rng = random.Random(3)
    valid = [format_event(WatchMinute(T, 1, "heat+1995", 5)).encode(),
             format_event(Rating(T, 1, "heat+1995", 4)).encode(),
             format_event(AccountCreation(T, 2)).encode(),
             b"2025-03-02T14:11:13,48212,recommendation request rec-1.svc:8082, status 0, "
             b"result: java.net.SocketTimeoutException: Read timed out, 600 ms"]
    invalid = [make_invalid(kind, rng) for kind in InvalidKind]
    values = valid + invalid
    batch = parse_batch(values, [0] * len(values), list(range(len(values))),
                        [0] * len(values), ParserSettings())
    assert {name: t.num_rows for name, t in batch.tables.items()} == {
        "watch_minutes": 1, "ratings": 1, "account_creations": 1, "recommendation_requests": 1}
    for name, table in batch.tables.items():
        assert table.schema == SCHEMAS[name]
    assert batch.tables["watch_minutes"].column("event_id").to_pylist() == [line_id(valid[0])]
    reco = batch.tables["recommendation_requests"].to_pylist()[0]
    assert reco["line"] == valid[3].decode() and reco["status"] == 0 and reco["movie_ids"] == []
    assert [r.offset for r in batch.rejected] == list(range(4, len(values)))
    for kind, rejected in zip(InvalidKind, batch.rejected, strict=True):
        assert rejected.rejection.reason in EXPECTED_REASONS[kind]
        assert rejected.rejection.reason is not Reason.DUPLICATE
    assert batch.user_ids == {1, 2, 48212}
    assert batch.movie_ids == {"heat+1995"}


def test_metrics_are_served_with_the_documented_names() -> None:
    port = free_port()
    metrics.serve(port)
    metrics.EVENTS.labels("watch", "accepted").inc(0)
    metrics.DLQ.labels("bad_timestamp").inc(0)
    metrics.CONSUMER_LAG.labels("0").set(0)
    metrics.ENRICHMENT.labels("ok").inc(0)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name in ("movierec_ingestor_events_total", "movierec_ingestor_dlq_total",
                 "movierec_ingestor_consumer_lag", "movierec_ingestor_batch_duration_seconds_bucket",
                 "movierec_ingestor_lake_written_bytes_total",
                 "movierec_ingestor_enrichment_requests_total"):
        assert name in body, name


def test_watch_minutes_from_the_kernels_and_the_reference_parser_keep_the_line_order() -> None:
    # Latin ids take the kernels; an id in another script and a 7-digit fraction the reference
    # parser: the table holds every one, in the order of the lines, with its line id
    values = [b"2025-03-02T14:07:33,1,GET /data/m/heat+1995/5.mpg",
              "2025-03-02T14:07:34,2,GET /data/m/東京+2003/6.mpg".encode(),
              b"2025-03-02T14:07:35.1234567,3,GET /data/m/heat+1995/7.mpg",
              b"2025-03-02T14:07:36.25,4,GET /data/m/up+2009/8.mpg\n"]
    batch = parse_batch(values, [0] * 4, list(range(4)), [0] * 4, ParserSettings())
    table = batch.tables["watch_minutes"]
    assert table.schema == SCHEMAS["watch_minutes"]
    assert table.to_pylist() == [
        {"event_id": line_id(values[0]), "time": T, "user_id": 1, "movie_id": "heat+1995",
         "minute": 5},
        {"event_id": line_id(values[1]), "time": datetime(2025, 3, 2, 14, 7, 34), "user_id": 2,
         "movie_id": "東京+2003", "minute": 6},
        {"event_id": line_id(values[2]), "time": datetime(2025, 3, 2, 14, 7, 35, 123456),
         "user_id": 3, "movie_id": "heat+1995", "minute": 7},
        {"event_id": line_id(values[3]), "time": datetime(2025, 3, 2, 14, 7, 36, 250000),
         "user_id": 4, "movie_id": "up+2009", "minute": 8}]
    assert batch.user_ids == {1, 2, 3, 4} and batch.rejected == []


def _reference_rows(values: list[bytes]) -> dict[str, list[dict]]:
    """The lake rows the per-line reference parser gives, table by table, in line order."""
    from movierec_core.events import RecommendationRequest, Rejection, parse

    rows: dict[str, list[dict]] = {}
    for value in values:
        e = parse(value)
        if isinstance(e, Rejection):
            continue
        row = {"event_id": line_id(value), "time": e.time, "user_id": e.user_id}
        if isinstance(e, WatchMinute):
            rows.setdefault("watch_minutes", []).append(
                {**row, "movie_id": e.movie_id, "minute": e.minute})
        elif isinstance(e, Rating):
            rows.setdefault("ratings", []).append({**row, "movie_id": e.movie_id, "stars": e.stars})
        elif isinstance(e, RecommendationRequest):
            rows.setdefault("recommendation_requests", []).append({
                **row, "server": e.server, "status": e.status, "movie_ids": list(e.movie_ids),
                "error": e.error, "response_ms": e.response_ms,
                "line": value.decode().rstrip("\r\n")})
        else:
            rows.setdefault("account_creations", []).append(row)
    return rows


def test_recommendation_requests_from_the_kernels_and_the_reference_parser_equal_it() -> None:
    """Every table, recommendation requests included (the logged line without its line end
    too), equals what the reference parser gives line by line: the kernels' rows and the
    reference parser's (a non-ASCII error text, a malformed list) merged in line order."""
    from tests.movierec_core.test_batch import DOUBTFUL_RECOMMENDATIONS, RECOMMENDATIONS
    from tests.movierec_core.test_fuzz import SEEDS, _mutate

    rng = random.Random(5)
    values = [*RECOMMENDATIONS, *DOUBTFUL_RECOMMENDATIONS,
              "2025-03-02T14:11:13,9,recommendation request s, status 0, result: délai, 3 ms\r\n"
              .encode()]
    values += [_mutate(rng, rng.choice(SEEDS)) if i % 2 else rng.choice(SEEDS)
               for i in range(3000)]
    rng.shuffle(values)
    batch = parse_batch(values, [0] * len(values), list(range(len(values))), [0] * len(values),
                        ParserSettings())
    expected = _reference_rows(values)
    assert {name: t.to_pylist() for name, t in batch.tables.items()} == expected
    assert len(expected["recommendation_requests"]) > 600
    assert all(t.schema == SCHEMAS[name] for name, t in batch.tables.items())
