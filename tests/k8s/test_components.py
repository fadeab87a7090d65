"""What each mode renders: KServe Standard vs Knative canary, payload logger, Istio A/B routes,
the Argo pipeline's DAG and its quality gate."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.k8s.conftest import CHART, REPO_ROOT, objects, render


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
    # the whole claim: a sub-path mount of registry/ would fail before the first training
    # creates it (found on the cluster: root-owned 0750, unreadable by UID 10001)
    assert model["storageUri"] == "pvc://movierec-data"
    assert model["runtime"] == "movierec-runtime" and model["modelFormat"] == {"name": "movierec"}
    assert "data.registry_root=/mnt/models/registry" in model["args"]
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
    # no mesh: the router splits by itself, following its weights ConfigMap (read-only Role)
    # and the `helm test` Pod, the admin token's and the pseudonym keys' Secrets
    assert kinds == ["ConfigMap", "Deployment", "InferenceService", "Pod", "Role", "RoleBinding",
                     "Secret", "Secret", "Service", "ServiceAccount", "ServiceAccount",
                     "ServingRuntime"]


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
    # only /recommend/ is routed, pinned or split: no admin or metrics path through the gateway
    assert all(r["match"] == [{**r["match"][0], "uri": {"prefix": "/recommend/"}}]
               for r in vs["http"])
    assert default["match"] == [{"uri": {"prefix": "/recommend/"}}]
    assert [(d["destination"]["subset"], d["weight"]) for d in default["route"]] == \
        [(v["name"], v["weight"]) for v in variants]
    assert sum(d["weight"] for d in default["route"]) == 100


def test_ab_subsets_select_one_router_deployment_each() -> None:
    dr = only("ab", "DestinationRule")["spec"]
    deployments = [d for d in by_kind("ab", "Deployment")
                   if d["metadata"]["labels"]["app.kubernetes.io/component"] == "router"]
    subsets = {s["name"]: s["labels"] for s in dr["subsets"]}
    assert set(subsets) == {"control", "cheap", "fast"}
    for d in deployments:
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        variant = pod_labels["movierec.io/variant"]
        assert subsets[variant].items() <= pod_labels.items()
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"experiments.variant={variant}" in args
    assert len(deployments) == 3
    service = next(s for s in by_kind("ab", "Service") if s["metadata"]["name"] == "movierec-router")
    assert "movierec.io/variant" not in service["spec"]["selector"]


def test_without_ab_one_variant_takes_all_traffic() -> None:
    vs = only(None, "VirtualService")["spec"]
    default = vs["http"][-1]
    assert [(d["destination"]["subset"], d["weight"]) for d in default["route"]] == [("control", 100)]
    assert "gateways" not in vs


# -- Argo pipeline -----------------------------------------------------------------------------

SCRIPTS = CHART / "files" / "pipeline"


def test_pipeline_dag_order() -> None:
    wft = only(None, "WorkflowTemplate")["spec"]
    tasks = {t["name"]: t.get("depends") for t in wft["templates"][0]["dag"]["tasks"]}
    # registration comes after the gate: a run whose gate fails registers nothing
    assert tasks == {"snapshot": None, "train": "snapshot", "evaluate": "train",
                     "quality-gate": "evaluate", "register": "quality-gate",
                     "canary": "register"}
    # scheduled, drift-triggered and manual runs never overlap
    assert wft["synchronization"] == {"mutexes": [{"name": "movierec-retrain"}]}
    by_name = {t["name"]: t for t in wft["templates"][0]["dag"]["tasks"]}
    assert by_name["register"]["arguments"]["parameters"] == [
        {"name": "bundle-dir", "value": "{{=jsonpath(tasks.train.outputs.result, '$.bundle_dir')}}"}]
    params = {p["name"]: p["value"] for p in wft["arguments"]["parameters"]}
    # the drift job's Workflow passes these (drift.retrain.render_workflow)
    assert {"reason", "drifted_detectors", "drift_report"} <= set(params)
    assert params["snapshot"] == "new"
    cron = only(None, "CronWorkflow")["spec"]
    assert cron["workflowSpec"] == {"workflowTemplateRef": {"name": "movierec-retrain"}}
    assert cron["schedules"] == ["0 3 * * *"] and cron["concurrencyPolicy"] == "Forbid"


def test_pipeline_commands_and_service_accounts() -> None:
    wft = only(None, "WorkflowTemplate")["spec"]
    steps = {t["name"]: t for t in wft["templates"][1:]}
    commands = {name: t["container"]["command"] for name, t in steps.items()}
    scripts = "/opt/movierec/pipeline"
    assert commands == {
        "snapshot": ["python", "-m", "ingestor", "snapshot", "--summary"],
        "train": ["python", "-m", "trainer"],
        "evaluate": ["python", f"{scripts}/evaluate.py", "{{inputs.parameters.bundle-dir}}"],
        "quality-gate": ["python", f"{scripts}/quality_gate.py"],
        "register": ["python", "-m", "trainer", "register", "{{inputs.parameters.bundle-dir}}"],
        "canary": ["python", f"{scripts}/canary_apply.py", "--config", scripts,
                   "--", "python", "-m", "experiments", "canary"],
    }
    assert wft["serviceAccountName"] == "movierec-pipeline"
    assert {n for n, t in steps.items() if "serviceAccountName" in t} == {"canary"}
    assert steps["canary"]["serviceAccountName"] == "movierec-pipeline-canary"
    canary_args = steps["canary"]["container"]["args"]
    for arg in ("experiments.canary.target=kserve", "experiments.canary.kserve_mode=standard",
                "experiments.canary.model_name=movierec", "experiments.canary.steps=[5,25,50,100]",
                "experiments.canary.kserve_patch_dir=/tmp/canary-patches"):
        assert arg in canary_args
    train_args = steps["train"]["container"]["args"]
    assert "snapshot={{inputs.parameters.snapshot-id}}" in train_args
    assert "trainer.register=false" in train_args
    assert "trainer.output_dir=/data/pipeline/{{workflow.name}}" in train_args
    knative = {t["name"]: t for t in only("knative", "WorkflowTemplate")["spec"]["templates"]}
    assert "experiments.canary.kserve_mode=knative" in knative["canary"]["container"]["args"]


def test_pipeline_scripts_configmap_matches_files_and_release() -> None:
    cm = next(c for c in by_kind(None, "ConfigMap") if c["metadata"]["name"] == "movierec-pipeline-scripts")
    for script in SCRIPTS.glob("*.py"):
        assert cm["data"][script.name] == script.read_text().rstrip("\n")
    settings = json.loads(cm["data"]["settings.json"])
    assert settings == {"inference_service": "movierec-model", "namespace": "movierec",
                        "mode": "standard", "patch_dir": "/tmp/canary-patches"}
    predictors = json.loads(cm["data"]["predictors.json"])
    isvc = only("canary", "InferenceService")["spec"]
    assert predictors["primary"] == only(None, "InferenceService")["spec"]["predictor"]
    assert predictors["canary"] == isvc["canary"][0]["predictor"]


def _run_gate(metrics: str, floor: str = "0.02", max_regression: str = "0.05") -> subprocess.CompletedProcess:
    env = {**os.environ, "METRICS": metrics, "MIN_NDCG_AT_10": floor, "MAX_REGRESSION": max_regression}
    return subprocess.run([sys.executable, str(SCRIPTS / "quality_gate.py")], env=env,
                          capture_output=True, text=True)


@pytest.mark.parametrize(
    ("metrics", "passes"),
    [
        ('{"ndcg_at_10": 0.031, "champion_ndcg_at_10": null}', True),     # first model, above floor
        ('{"ndcg_at_10": 0.019, "champion_ndcg_at_10": null}', False),    # below floor
        ('{"ndcg_at_10": 0.030, "champion_ndcg_at_10": 0.031}', True),    # -3.2 %: within 5 %
        ('{"ndcg_at_10": 0.029, "champion_ndcg_at_10": 0.031}', False),   # -6.5 %: regression
        ('{"ndcg_at_10": null, "champion_ndcg_at_10": 0.031}', False),    # no metric: fail closed
    ],
)
def test_quality_gate_script(metrics: str, passes: bool) -> None:
    proc = _run_gate(metrics)
    assert (proc.returncode == 0) is passes, proc.stdout + proc.stderr
    assert ("quality gate: passed" in proc.stdout) is passes


def _bundle(tmp_path, name: str, metrics: dict) -> str:
    bundle = tmp_path / "bundles" / name
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text(json.dumps({"model_type": "als", "metrics": metrics}))
    return str(bundle)


@pytest.mark.parametrize(
    ("champion", "expected"),
    [
        # a champion is registered: the new bundle is compared with it
        ({"ndcg@10": 0.04}, {"ndcg_at_10": 0.05, "champion_version": "v0001",
                             "champion_ndcg_at_10": 0.04}),
        # no champion yet: this will be the first model, nothing to compare
        (None, {"ndcg_at_10": 0.05, "champion_version": None, "champion_ndcg_at_10": None}),
    ],
)
def test_evaluate_script_compares_the_unregistered_bundle_with_the_champion(
        tmp_path, champion, expected) -> None:
    """evaluate.py against the trainer's real `show` command on a real FileRegistry; the new
    bundle is not in the registry (it is registered only after the gate)."""
    from movierec_core.registry import FileRegistry

    registry = FileRegistry(tmp_path / "registry")
    if champion is not None:
        registry.register("movierec", _bundle(tmp_path, "old", champion),
                          aliases=("champion", "challenger"))
    new = _bundle(tmp_path, "new", {"warm": {"ndcg@10": 0.05}})
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "evaluate.py"), new,
         f"data.registry_root={tmp_path / 'registry'}", "trainer.model_name=movierec"],
        cwd=REPO_ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"bundle_dir": new, "model_type": "als", **expected}
    assert [v.version for v in registry.versions("movierec")] == (["v0001"] if champion else [])


def _canary_apply():
    spec = importlib.util.spec_from_file_location("canary_apply", SCRIPTS / "canary_apply.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeApi:
    def __init__(self) -> None:
        self.patches: list[dict] = []

    def patch(self, body: dict) -> None:
        self.patches.append(body)


def test_canary_apply_replaces_the_controllers_predictor_with_the_charts() -> None:
    ca = _canary_apply()
    primary, canary = {"model": {"args": ["serving.alias=champion"]}}, {"model": {"args": ["serving.alias=challenger"]}}
    minimal = {"name": "canary", "model": {"args": ["serving.alias=challenger"]}}
    assert ca.translate({"spec": {"canary": [{"predictor": minimal, "trafficPercent": 25}]}},
                        "standard", primary, canary) == \
        {"spec": {"canary": [{"trafficPercent": 25, "predictor": canary}]}}
    assert ca.translate({"spec": {"canary": []}}, "standard", primary, canary) == {"spec": {"canary": []}}
    assert ca.translate({"spec": {"predictor": {**minimal, "canaryTrafficPercent": 50}}},
                        "knative", primary, canary) == \
        {"spec": {"predictor": {**canary, "canaryTrafficPercent": 50}}}
    assert ca.clear("knative", primary) == {"spec": {"predictor": {**primary, "canaryTrafficPercent": None}}}


def test_canary_apply_applies_each_new_patch_once_in_order(tmp_path) -> None:
    ca = _canary_apply()
    api, seen = FakeApi(), set()
    for i, pct in enumerate([5, 25]):
        (tmp_path / f"{i:02d}-canary-{pct}.json").write_text(
            json.dumps({"spec": {"canary": [{"predictor": {}, "trafficPercent": pct}]}}))
    assert ca.apply_new(tmp_path, seen, api, "standard", {}, {"model": {}}) == 2
    assert ca.apply_new(tmp_path, seen, api, "standard", {}, {"model": {}}) == 0
    (tmp_path / "02-canary-0.json").write_text(json.dumps({"spec": {"canary": []}}))
    assert ca.apply_new(tmp_path, seen, api, "standard", {}, {"model": {}}) == 1
    assert [p["spec"]["canary"][0]["trafficPercent"] if p["spec"]["canary"] else 0
            for p in api.patches] == [5, 25, 0]


# -- what KServe v0.20's admission webhook refuses (found by the real controller) -------------

@pytest.mark.parametrize("values", [None, "canary", "knative", "local"])
def test_predictors_pass_kserve_v020_webhook_rules(values: str | None) -> None:
    """pkg/apis/serving/v1beta1/inference_service_validation.go: no `name` on a standard
    predictor's model; a Standard-mode canary needs predictor.name and fixed replicas (no
    maxReplicas, scaleMetric, scaleTarget, autoScaling)."""
    isvc = only(values, "InferenceService")
    spec = isvc["spec"]
    assert "name" not in spec["predictor"]["model"]
    for entry in spec.get("canary", []):
        canary = entry["predictor"]
        assert canary["model"]["name"]  # the v0.20 CRD requires it on a canary's model
        assert canary["name"] and canary["name"] != spec["predictor"].get("name")
        assert not {"maxReplicas", "scaleMetric", "scaleTarget", "autoScaling"} & set(canary)
        assert canary.get("minReplicas", 1) <= spec["predictor"].get("minReplicas", 1)
    if spec.get("canary"):
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_pipeline_canary_predictor_follows_the_same_rules() -> None:
    cm = next(o for o in objects(render(None)) if o["kind"] == "ConfigMap"
              and o["metadata"]["name"] == "movierec-pipeline-scripts")
    predictors = json.loads(cm["data"]["predictors.json"])
    assert "name" not in predictors["primary"]["model"]
    assert predictors["canary"]["name"] == "canary" and predictors["canary"]["model"]["name"]
    assert not {"maxReplicas", "scaleMetric", "scaleTarget"} & set(predictors["canary"])
    assert {"maxReplicas", "scaleMetric", "scaleTarget"} <= set(predictors["primary"])


def test_helm_test_pod_calls_recommend_for_a_known_and_an_unknown_user() -> None:
    """Found on the cluster: Helm renders a large integer value as a float (999999999.0) and
    the router answers 400 for it; the ids must reach the script as integers."""
    pod = next(o for o in objects(render(CHART / "ci" / "local-values.yaml")) if o["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    assert '("known", 1), ("unknown", 999999999)' in script
    assert "http://movierec-router.movierec.svc:8082" in script
    compile(script, "recommend-test", "exec")


@pytest.mark.parametrize("values", [None, "canary", "local"])
def test_standard_mode_predictors_are_scraped_on_the_model_servers_own_port(values) -> None:
    """Found on the cluster: KServe's enable-prometheus-scraping annotates pods with the
    Knative queue-proxy's port 9091, which nothing serves in Standard mode."""
    isvc = only(values, "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "false"
    spec = isvc["spec"]
    for predictor in [spec["predictor"], *(c["predictor"] for c in spec.get("canary", []))]:
        assert predictor["annotations"] == {"prometheus.io/scrape": "true",
                                            "prometheus.io/port": "8080",
                                            "prometheus.io/path": "/metrics"}
    knative = only("knative", "InferenceService")
    assert knative["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"


def test_router_calls_the_predictor_services_kserve_creates_in_standard_mode() -> None:
    """Found on the cluster: in Standard mode KServe v0.20 makes `<isvc>-predictor` (port 80)
    and, per canary, `<isvc>-<name>-predictor`; `<isvc>.<ns>.svc` exists only behind Knative
    or a gateway. Without a mesh the router knows both and the weights ConfigMap splits."""
    objs = objects(render(CHART / "ci" / "local-values.yaml", "modelServer.canary.enabled=true",
                          "modelServer.canary.name=challenger",
                          "modelServer.canary.trafficPercent=25"))
    router = next(o for o in objs if o["kind"] == "Deployment"
                  and o["metadata"]["name"] == "movierec-router")
    args = router["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "experiments.variants=[{name:control,weight:75,urls:[http://movierec-model-predictor"\
        ".movierec.svc.cluster.local]},{name:challenger,weight:25,urls:[http://movierec-model-"\
        "challenger-predictor.movierec.svc.cluster.local]}]" in args
    assert "experiments.weights_configmap=movierec-router-weights" in args
    weights = next(o for o in objs if o["kind"] == "ConfigMap"
                   and o["metadata"]["name"] == "movierec-router-weights")
    assert json.loads(weights["data"]["weights.json"]) == {
        "source": "helm", "weights": {"control": 75, "challenger": 25}}
    canary = next(o for o in objs if o["kind"] == "InferenceService")["spec"]["canary"][0]
    assert canary["predictor"]["name"] == "challenger" and canary["trafficPercent"] == 25
