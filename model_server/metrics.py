"""Prometheus metrics of the model server, served on the ModelServer's own ``/metrics``.

KServe's ``/metrics`` exposes ``prometheus_client.REGISTRY``; these live there. The names are
referenced by alerts and dashboards: do not rename them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "movierec_model_server_requests_total",
    "Requests answered, by endpoint (recommend, v1, v2, admin), HTTP status and model version.",
    ["endpoint", "status", "model_version"],
)
REQUEST_DURATION = Histogram(
    "movierec_model_server_request_duration_seconds",
    "Time from request handling start to response, by endpoint.",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25,
             0.5, 1.0),
)
FALLBACKS = Counter(
    "movierec_model_server_fallbacks_total",
    "Answers served from the fallback list instead of the model, by reason "
    "(deadline, error, not_ready).",
    ["reason"],
)
COLD_STARTS = Counter(
    "movierec_model_server_cold_starts_total",
    "Users unknown to the model, by where their list came from "
    "(segment, popularity, fold_in).",
    ["source"],
)
MODEL_INFO = Gauge(
    "movierec_model_server_model_info",
    "1 for the model version in service, 0 for versions served before.",
    ["version", "model_type"],
)
MODEL_SWAPS = Counter(
    "movierec_model_server_model_swaps_total",
    "Model versions swapped in after the first load.",
)
PROVENANCE_DROPPED = Counter(
    "movierec_model_server_provenance_dropped_total",
    "Provenance records dropped because the writer queue was full or a sink failed.",
)
FOLD_INS = Counter(
    "movierec_model_server_fold_ins_total",
    "Requests whose user factors were recomputed from the online store.",
)


def set_model_info(version: str, model_type: str, previous: tuple[str, str] | None) -> None:
    """Mark ``version`` as the one in service (and the previous one as retired)."""
    if previous is not None and previous != (version, model_type):
        MODEL_INFO.labels(version=previous[0], model_type=previous[1]).set(0)
    MODEL_INFO.labels(version=version, model_type=model_type).set(1)

CACHE_LOOKUPS = Counter(
    "movierec_model_server_cache_lookups_total",
    "Recommendation cache lookups by result (hit; miss: no entry; stale: the user has new "
    "events since the entry)",
    ["result"],
)
