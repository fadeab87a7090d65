"""The ingestor's Prometheus metrics (names are referenced by alerts and dashboards)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()

EVENTS = Counter(
    "movierec_ingestor_events", "Consumed lines by event kind and outcome "
    "(accepted | duplicate | invalid; invalid lines have kind 'unknown').",
    ["kind", "outcome"], registry=REGISTRY)
DLQ = Counter("movierec_ingestor_dlq", "Lines dead-lettered, by reason code.", ["reason"],
              registry=REGISTRY)
CONSUMER_LAG = Gauge("movierec_ingestor_consumer_lag",
                     "Records between the committed position and the partition's high watermark.",
                     ["partition"], registry=REGISTRY)
BATCH_DURATION = Histogram(
    "movierec_ingestor_batch_duration_seconds",
    "Time to parse, dead-letter, write and commit one batch.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
LAKE_BYTES = Counter("movierec_ingestor_lake_written_bytes", "Parquet bytes written to the lake.",
                     registry=REGISTRY)
ENRICHMENT = Counter("movierec_ingestor_enrichment_requests",
                     "Metadata API requests by outcome (ok | not_found | retry | error).",
                     ["outcome"], registry=REGISTRY)


def serve(port: int) -> None:
    """Serve ``/metrics`` on 0.0.0.0:``port`` from a daemon thread (0: do nothing)."""
    if port:
        try:
            start_http_server(port, registry=REGISTRY)
        except OSError as exc:  # metrics are not worth refusing to ingest
            logging.getLogger("ingestor").error("cannot serve /metrics on port %d: %s", port, exc)
