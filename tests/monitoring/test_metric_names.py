"""Every metric the alerts and the dashboard query is exported by the code.

Exported names come from the packages' ``metrics`` modules: the default prometheus_client
registry, any module-level ``CollectorRegistry``, and the registry of any ``*Metrics`` class the
module defines (experiments and trainer build theirs per process). Counters expose
``<name>_total``; histograms ``_bucket``/``_sum``/``_count``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path

import prometheus_client
import pytest
import yaml
from prometheus_client import CollectorRegistry

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "monitoring"
METRIC_MODULES = ("ingestor.metrics", "model_server.metrics", "experiments.metrics",
                  "trainer.metrics", "drift.metrics", "movierec_core.pushed_metrics")
NAME = re.compile(r"\bmovierec_[a-z0-9_]+\b")

# The published contract (issue 9 and each package's issue): what alerts/dashboards may use.
CONTRACT = {
    "movierec_ingestor_events_total", "movierec_ingestor_dlq_total",
    "movierec_ingestor_consumer_lag", "movierec_ingestor_batch_duration_seconds_bucket",
    "movierec_ingestor_batch_duration_seconds_sum", "movierec_ingestor_batch_duration_seconds_count",
    "movierec_ingestor_lake_written_bytes_total", "movierec_ingestor_enrichment_requests_total",
    "movierec_model_server_requests_total", "movierec_model_server_request_duration_seconds_bucket",
    "movierec_model_server_request_duration_seconds_sum",
    "movierec_model_server_request_duration_seconds_count",
    "movierec_model_server_fallbacks_total", "movierec_model_server_cold_starts_total",
    "movierec_model_server_model_info", "movierec_model_server_model_swaps_total",
    "movierec_router_requests_total", "movierec_router_request_duration_seconds_bucket",
    "movierec_router_request_duration_seconds_sum", "movierec_router_request_duration_seconds_count",
    "movierec_router_variant_weight", "movierec_canary_promotions_total",
    "movierec_canary_rollbacks_total", "movierec_experiment_watch_through",
    "movierec_trainer_runs_total", "movierec_trainer_duration_seconds",
    "movierec_trainer_last_champion_timestamp_seconds",
    "movierec_drift_detected", "movierec_drift_p_value", "movierec_drift_distance",
    "movierec_drift_window_samples", "movierec_drift_last_run_timestamp_seconds",
    "movierec_drift_runs_total", "movierec_drift_retrains_triggered_total",
    "movierec_drift_online_payloads_total",
}


def referenced_names() -> dict[str, set[str]]:
    """Metric name -> where it is used (alert names, dashboard panel titles)."""
    used: dict[str, set[str]] = {}
    for group in yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]:
        for rule in group["rules"]:
            for name in NAME.findall(rule["expr"]):
                used.setdefault(name, set()).add(f"alert {rule.get('alert', rule.get('record'))}")
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        for panel in _panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                for name in NAME.findall(target.get("expr", "")):
                    used.setdefault(name, set()).add(f"{path.name}: {panel['title']}")
    return used


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def sample_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        n = family.name
        if family.type == "counter":
            names |= {f"{n}_total", f"{n}_created"}
        elif family.type == "histogram":
            names |= {f"{n}_bucket", f"{n}_sum", f"{n}_count", f"{n}_created"}
        elif family.type == "summary":
            names |= {n, f"{n}_sum", f"{n}_count", f"{n}_created"}
        elif family.type == "info":
            names.add(f"{n}_info")
        else:  # gauge, stateset, unknown
            names.add(n)
    return names


def registries_of(module) -> list[CollectorRegistry]:
    regs = [prometheus_client.REGISTRY]
    for value in vars(module).values():
        if isinstance(value, CollectorRegistry):
            regs.append(value)
        elif (inspect.isclass(value) and value.__module__ == module.__name__
              and value.__name__.endswith("Metrics")):
            instance = value()  # each build registers on a registry of its own
            regs.extend(v for v in vars(instance).values() if isinstance(v, CollectorRegistry))
    return regs


def exported_names() -> set[str]:
    names: set[str] = set()
    for module_name in METRIC_MODULES:
        module = importlib.import_module(module_name)
        for registry in registries_of(module):
            names |= sample_names(registry)
    return names


def test_alerts_and_dashboards_use_only_the_published_metric_contract() -> None:
    unknown = {n: sorted(w) for n, w in referenced_names().items() if n not in CONTRACT}
    assert unknown == {}


def test_every_queried_metric_is_exported_by_the_code() -> None:
    exported = exported_names()
    missing = {n: sorted(w) for n, w in referenced_names().items() if n not in exported}
    assert missing == {}


def test_drift_exports_its_part_of_the_contract() -> None:
    from drift import metrics

    exported = sample_names(metrics.REGISTRY)
    assert {n for n in CONTRACT if n.startswith("movierec_drift_")} <= exported


@pytest.mark.parametrize("dashboard", sorted((MONITORING / "dashboards").glob("*.json")),
                         ids=lambda p: p.name)
def test_dashboard_is_grafana_json_with_unique_panel_ids(dashboard: Path) -> None:
    data = json.loads(dashboard.read_text())
    assert data["uid"] and data["title"]
    ids = [p["id"] for p in _panels(data)]
    assert len(ids) == len(set(ids))
    for panel in _panels(data):
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]


def test_dashboard_covers_the_required_areas() -> None:
    data = json.loads((MONITORING / "dashboards" / "movierec.json").read_text())
    rows = [p["title"] for p in data["panels"] if p["type"] == "row"]
    assert rows == ["SLA", "Throughput", "Model versions in service", "A/B tests and canary",
                    "Drift", "Ingestion lag"]


def test_docs_list_every_exported_metric() -> None:
    doc = (REPO_ROOT / "docs" / "metrics.md").read_text()
    documented = set(NAME.findall(doc))
    families = set()
    for module_name in METRIC_MODULES:
        module = importlib.import_module(module_name)
        for registry in registries_of(module):
            for family in registry.collect():
                if family.name.startswith("movierec_"):
                    suffix = "_total" if family.type == "counter" else ""
                    families.add(family.name + suffix)
    assert sorted(families - documented) == []
