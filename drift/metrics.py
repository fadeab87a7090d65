"""Prometheus metrics of the drift job and the online drift service.

They live in their own registry: the batch job pushes exactly these to the Pushgateway (no
process metrics of a short-lived pod), and the online service serves the same registry on
``/metrics``. Names are referenced by alerts and dashboards: do not rename them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

DRIFT_DETECTED = Gauge(
    "movierec_drift_detected",
    "1 if the detector found drift in its latest run, else 0 (online detectors: online_*).",
    ["detector"],
    registry=REGISTRY,
)
P_VALUE = Gauge(
    "movierec_drift_p_value",
    "p-value of the latest two-sample test (KS numeric, chi-square categorical) per feature.",
    ["detector", "feature"],
    registry=REGISTRY,
)
DISTANCE = Gauge(
    "movierec_drift_distance",
    "Test statistic of the latest run per feature (KS distance or chi-square statistic).",
    ["detector", "feature"],
    registry=REGISTRY,
)
SAMPLES = Gauge(
    "movierec_drift_window_samples",
    "Units (users, watched pairs, ratings, lists, payloads) tested, by detector and window.",
    ["detector", "window"],
    registry=REGISTRY,
)
LAST_RUN = Gauge(
    "movierec_drift_last_run_timestamp_seconds",
    "Unix time at which the latest drift run finished.",
    registry=REGISTRY,
)
RUNS = Counter(
    "movierec_drift_runs_total",
    "Drift runs, by outcome (drift, no_drift, error).",
    ["outcome"],
    registry=REGISTRY,
)
RETRAINS = Counter(
    "movierec_drift_retrains_triggered_total",
    "Retrains triggered because of drift (local trainer runs or submitted Argo workflows).",
    registry=REGISTRY,
)
ONLINE_PAYLOADS = Counter(
    "movierec_drift_online_payloads_total",
    "KServe payload-logger CloudEvents received by the online drift service, by ce-type "
    "(request, response, other) and outcome (accepted, rejected).",
    ["type", "outcome"],
    registry=REGISTRY,
)


def record_run(run, finished_at: float | None) -> None:
    """Set the gauges from a :class:`drift.detectors.DriftRun`; ``finished_at`` None (the
    online service) leaves the batch job's last-run timestamp alone."""
    for name, result in run.detectors.items():
        DRIFT_DETECTED.labels(detector=name).set(1 if result.is_drift else 0)
        SAMPLES.labels(detector=name, window="reference").set(result.n_reference)
        SAMPLES.labels(detector=name, window="current").set(result.n_current)
        for feature, fr in result.features.items():
            P_VALUE.labels(detector=name, feature=feature).set(fr.p_value)
            DISTANCE.labels(detector=name, feature=feature).set(fr.distance)
    if finished_at is not None:
        LAST_RUN.set(finished_at)
