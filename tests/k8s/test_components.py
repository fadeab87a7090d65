"""What each mode renders: KServe Standard vs Knative canary, payload logger, Istio A/B routes,
the Argo pipeline's DAG and its quality gate."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.k8s.conftest import CHART, objects, render


def by_kind(values: str | None, kind: str, *set_args: str) -> list[dict[str, Any]]:
    path = CHART / "ci" / f"{values}-values.yaml" if values else None
    return [o for o in objects(render(path, *set_args)) if o["kind"] == kind]


def only(values: str | None, kind: str, *set_args: str) -> dict[str, Any]:
    (obj,) = by_kind(values, kind, *set_args)
    return obj


# -- KServe ----------------------------------------------------------------------------------

def test_standard_mode_has_no_canary_by_default() -> None:
    isvc = only("standard", "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert "canary" not in isvc["spec"]
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]


def test_standard_mode_canary_uses_the_v020_canary_spec() -> None:
    isvc = only("canary", "InferenceService")
    (canary,) = isvc["spec"]["canary"]
    assert canary["trafficPercent"] == 10
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert "serving.alias=champion" in isvc["spec"]["predictor"]["model"]["args"]
    assert "serving.alias=challenger" in canary["predictor"]["model"]["args"]
    assert canary["predictor"]["model"]["storageUri"] == isvc["spec"]["predictor"]["model"]["storageUri"]


def test_knative_mode_canary_uses_canary_traffic_percent() -> None:
    isvc = only("knative", "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert "serving.kserve.io/autoscalerClass" not in isvc["metadata"]["annotations"]
    assert "canary" not in isvc["spec"]
    assert predictor["canaryTrafficPercent"] == 20
    assert predictor["minReplicas"] == 0 and predictor["scaleMetric"] == "concurrency"
    # the new revision is the challenger; Knative keeps the previous revision for the rest
    assert "serving.alias=challenger" in predictor["model"]["args"]


def test_predictor_serves_the_registry_from_the_data_claim() -> None:
    model = only(None, "InferenceService")["spec"]["predictor"]["model"]
    assert model["storageUri"] == "pvc://movierec-data/registry"
    assert model["runtime"] == "movierec-runtime" and model["modelFormat"] == {"name": "movierec"}
    assert "data.registry_root=/mnt/models" in model["args"]
    assert "serving.http_port=8080" in model["args"]
    runtime = only(None, "ServingRuntime")
    (container,) = runtime["spec"]["containers"]
    assert container["command"] == ["python", "-m", "model_server"]
    assert runtime["spec"]["supportedModelFormats"][0]["name"] == "movierec"


def test_payload_logger_targets_the_online_drift_service() -> None:
    predictor = only(None, "InferenceService")["spec"]["predictor"]
    service = next(s for s in by_kind(None, "Service") if s["metadata"]["name"] == "movierec-drift-online")
    port = service["spec"]["ports"][0]["port"]
    assert predictor["logger"] == {
        "mode": "all", "url": f"http://movierec-drift-online.movierec.svc.cluster.local:{port}/"}
    drift = next(d for d in by_kind(None, "Deployment") if d["metadata"]["name"] == "movierec-drift-online")
    assert drift["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "drift", "online"]


def test_minimal_renders_only_serving() -> None:
    kinds = sorted(o["kind"] for o in objects(render(CHART / "ci" / "minimal-values.yaml")))
    assert kinds == ["Deployment", "InferenceService", "Service", "ServiceAccount",
                     "ServiceAccount", "ServingRuntime"]


# -- Istio A/B ---------------------------------------------------------------------------------

def test_ab_routes_pin_by_header_then_split_by_weight() -> None:
    values = yaml.safe_load((CHART / "ci" / "ab-values.yaml").read_text())
    variants = values["experiment"]["variants"]
    vs = only("ab", "VirtualService")["spec"]
    host = "movierec-router.movierec.svc.cluster.local"
    assert vs["hosts"] == [host, "recommend.movierec.example.com"]
    assert vs["gateways"] == ["mesh", "istio-system/movierec-gateway"]
    *pinned, default = vs["http"]
    assert [r["match"][0]["headers"]["x-movierec-variant"]["exact"] for r in pinned] == \
        [v["name"] for v in variants]
    assert [r["route"][0]["destination"]["subset"] for r in pinned] == [v["name"] for v in variants]
    assert "match" not in default
    assert [(d["destination"]["subset"], d["weight"]) for d in default["route"]] == \
        [(v["name"], v["weight"]) for v in variants]
    assert sum(d["weight"] for d in default["route"]) == 100


def test_ab_subsets_select_one_router_deployment_each() -> None:
    dr = only("ab", "DestinationRule")["spec"]
    deployments = [d for d in by_kind("ab", "Deployment")
                   if d["metadata"]["labels"]["app.kubernetes.io/component"] == "router"]
    subsets = {s["name"]: s["labels"] for s in dr["subsets"]}
    assert set(subsets) == {"control", "diverse", "cheap"}
    for d in deployments:
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        variant = pod_labels["movierec.io/variant"]
        assert subsets[variant].items() <= pod_labels.items()
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"++router.variant={variant}" in args
    assert len(deployments) == 3
    service = next(s for s in by_kind("ab", "Service") if s["metadata"]["name"] == "movierec-router")
    assert "movierec.io/variant" not in service["spec"]["selector"]


def test_without_ab_one_variant_takes_all_traffic() -> None:
    vs = only(None, "VirtualService")["spec"]
    default = vs["http"][-1]
    assert [(d["destination"]["subset"], d["weight"]) for d in default["route"]] == [("control", 100)]
    assert "gateways" not in vs


# -- Argo pipeline -----------------------------------------------------------------------------

def test_pipeline_dag_order() -> None:
    wft = only(None, "WorkflowTemplate")["spec"]
    tasks = {t["name"]: t.get("depends") for t in wft["templates"][0]["dag"]["tasks"]}
    assert tasks == {"snapshot": None, "train": "snapshot", "evaluate": "train",
                     "quality-gate": "evaluate", "register": "quality-gate",
                     "promote-challenger": "register", "canary": "promote-challenger"}
    cron = only(None, "CronWorkflow")["spec"]
    assert cron["workflowSpec"] == {"workflowTemplateRef": {"name": "movierec-retrain"}}
    assert cron["schedules"] == ["0 3 * * *"] and cron["concurrencyPolicy"] == "Forbid"


def test_pipeline_commands_and_service_accounts() -> None:
    wft = only(None, "WorkflowTemplate")["spec"]
    steps = {t["name"]: t for t in wft["templates"][1:]}
    commands = {name: t.get("container", t.get("script"))["command"] for name, t in steps.items()}
    assert commands == {
        "snapshot": ["python", "-m", "ingestor", "snapshot"],
        "train": ["python", "-m", "trainer"],
        "evaluate": ["python", "-m", "trainer", "evaluate"],
        "quality-gate": ["python"],
        "register": ["python", "-m", "trainer", "register"],
        "promote-challenger": ["python", "-m", "trainer", "promote", "--alias", "challenger"],
        "canary": ["python", "-m", "experiments", "canary"],
    }
    assert wft["serviceAccountName"] == "movierec-pipeline"
    assert {n for n, t in steps.items() if "serviceAccountName" in t} == {"canary"}
    assert steps["canary"]["serviceAccountName"] == "movierec-pipeline-canary"
    canary_args = steps["canary"]["container"]["args"]
    assert "++canary.inference_service=movierec-model" in canary_args
    assert "++canary.deployment_mode=Standard" in canary_args
    assert "snapshot={{inputs.parameters.snapshot-id}}" in steps["train"]["container"]["args"]


def _run_gate(metrics: str, floor: str = "0.02", max_regression: str = "0.05") -> subprocess.CompletedProcess:
    wft = only(None, "WorkflowTemplate")["spec"]
    gate = next(t for t in wft["templates"] if t["name"] == "quality-gate")
    env = {**os.environ, "METRICS": metrics, "MIN_NDCG_AT_10": floor, "MAX_REGRESSION": max_regression}
    return subprocess.run([sys.executable, "-c", gate["script"]["source"]], env=env,
                          capture_output=True, text=True)


@pytest.mark.parametrize(
    ("metrics", "passes"),
    [
        ('{"ndcg_at_10": 0.031}', True),                                  # first model, above floor
        ('{"ndcg_at_10": 0.019}', False),                                 # below floor
        ('{"ndcg_at_10": 0.030, "champion_ndcg_at_10": 0.031}', True),    # -3.2 %: within 5 %
        ('{"ndcg_at_10": 0.029, "champion_ndcg_at_10": 0.031}', False),   # -6.5 %: regression
    ],
)
def test_quality_gate_script(metrics: str, passes: bool) -> None:
    proc = _run_gate(metrics)
    assert (proc.returncode == 0) is passes, proc.stdout + proc.stderr
    assert ("quality gate: passed" in proc.stdout) is passes
