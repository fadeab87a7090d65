"""Policy checks on every rendered object, for every values mode: pinned images, resources,
restricted security contexts, probes on long-running containers, least-privilege RBAC."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.conftest import (
    RENDER_CASES,
    RENDER_IDS,
    containers_of,
    objects,
    pod_specs,
    render,
)

PINNED_TAG = re.compile(r"^[^:@\s]+(:[0-9][A-Za-z0-9_.-]*)$")
LONG_RUNNING = {"Deployment", "ServingRuntime"}


def rendered(values_file: Path | None) -> list[dict[str, Any]]:
    return objects(render(values_file))


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_images_are_pinned_never_latest(values_file: Path | None) -> None:
    images = [(f"{o['kind']}/{o['metadata']['name']}/{where}", c["image"])
              for o in rendered(values_file) for where, c in containers_of(o) if "image" in c]
    assert images
    for where, image in images:
        assert "latest" not in image, where
        assert PINNED_TAG.match(image), f"{where}: {image} is not pinned to a version tag"


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_every_container_sets_requests_and_limits(values_file: Path | None) -> None:
    for o in rendered(values_file):
        for where, c in containers_of(o):
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), \
                    f"{o['kind']}/{o['metadata']['name']}/{where} lacks {part}"


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_every_container_is_restricted(values_file: Path | None) -> None:
    for o in rendered(values_file):
        for where, c in containers_of(o):
            sc = c.get("securityContext", {})
            name = f"{o['kind']}/{o['metadata']['name']}/{where}"
            assert sc.get("runAsNonRoot") is True, name
            assert sc.get("readOnlyRootFilesystem") is True, name
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_every_pod_runs_as_non_root_with_runtime_default_seccomp(values_file: Path | None) -> None:
    pods = []
    for o in rendered(values_file):
        specs = list(pod_specs(o))
        if o["kind"] == "WorkflowTemplate":
            specs.append(("workflow", o["spec"]))
        for where, pod in specs:
            pods.append(where)
            sc = pod.get("securityContext", {})
            name = f"{o['kind']}/{o['metadata']['name']}/{where}"
            assert sc.get("runAsNonRoot") is True, name
            assert sc.get("runAsUser", 0) > 0, name
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
    assert pods


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_long_running_containers_have_probes(values_file: Path | None) -> None:
    for o in rendered(values_file):
        if o["kind"] not in LONG_RUNNING:
            continue
        for where, c in containers_of(o):
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert probe in c, f"{o['kind']}/{o['metadata']['name']}/{where} lacks {probe}"


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_writable_tmp_is_an_emptydir(values_file: Path | None) -> None:
    """Read-only root filesystems need a writable /tmp (Python, Hydra, step outputs)."""
    for o in rendered(values_file):
        for where, c in containers_of(o):
            if o["kind"] == "InferenceService":
                continue  # the model container's mounts come from the ServingRuntime
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") == "tmp", f"{o['kind']}/{o['metadata']['name']}/{where}"


# accounts whose ServiceAccount object mounts a token by default (the pipeline's steps)
TOKEN_HOLDERS = {"pipeline", "pipeline-canary", "drift-job"}


def _bound_accounts(objs: list[dict]) -> set[str]:
    return {s["name"] for o in objs if o["kind"] == "RoleBinding" for s in o["subjects"]
            if s["kind"] == "ServiceAccount"}


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_only_accounts_with_a_role_mount_api_tokens(values_file: Path | None) -> None:
    """A pod mounts an API token exactly when its account is bound to a Role of the release
    (pipeline steps; the router without a mesh reads its weights ConfigMap; the in-chart
    Prometheus lists pods); no other account holds one."""
    objs = list(rendered(values_file))
    bound = _bound_accounts(objs)
    for o in objs:
        for where, pod in pod_specs(o):
            account = pod.get("serviceAccountName", "")
            assert account, f"{o['kind']}/{where} uses the default account"
            assert pod.get("automountServiceAccountToken") is (account in bound), \
                f"{o['kind']}/{where}"
        if o["kind"] == "ServiceAccount" and o["automountServiceAccountToken"]:
            # an account mounts by default only for the pipeline's steps, and only when bound
            component = o["metadata"]["labels"]["app.kubernetes.io/component"]
            assert component in TOKEN_HOLDERS and o["metadata"]["name"] in bound


def test_rbac_is_least_privilege() -> None:
    objs = rendered(None)
    rules = {o["metadata"]["name"]: o["rules"] for o in objs if o["kind"] in ("Role", "ClusterRole")}
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert rules == {
        # Argo's executor reports step outputs; every pipeline step has this and nothing else
        "movierec-argo-executor": [{"apiGroups": ["argoproj.io"],
                                    "resources": ["workflowtaskresults"],
                                    "verbs": ["create", "patch"]}],
        # the canary step: get/patch on this release's InferenceService, nothing more
        "movierec-pipeline-canary": [{"apiGroups": ["serving.kserve.io"],
                                      "resources": ["inferenceservices"],
                                      "resourceNames": ["movierec-model"],
                                      "verbs": ["get", "patch"]}],
        # the drift job submits a retraining run
        "movierec-drift-job": [{"apiGroups": ["argoproj.io"], "resources": ["workflows"],
                                "verbs": ["create"]}],
    }
    bindings = {o["metadata"]["name"]: [s["name"] for s in o["subjects"]]
                for o in objs if o["kind"] == "RoleBinding"}
    assert bindings == {
        "movierec-argo-executor": ["movierec-pipeline", "movierec-pipeline-canary"],
        "movierec-pipeline-canary": ["movierec-pipeline-canary"],
        "movierec-drift-job": ["movierec-drift-job"],
    }


def test_every_object_carries_the_standard_labels() -> None:
    for o in rendered(None):
        labels = o["metadata"].get("labels", {})
        for key in ("name", "instance", "component", "version", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, f"{o['kind']}/{o['metadata']['name']}"
        assert labels["app.kubernetes.io/part-of"] == "movierec"
        assert o["metadata"]["namespace"] == "movierec"


def test_network_policies_default_deny_then_allow_per_component() -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in rendered(None) if o["kind"] == "NetworkPolicy"}
    deny = policies.pop("movierec-default-deny")
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    assert set(policies) == {"movierec-ingestor", "movierec-router", "movierec-model-server",
                             "movierec-drift-online"}
    ports = {name: sorted(p["port"] for rule in spec["ingress"] for p in rule["ports"])
             for name, spec in policies.items()}
    assert ports == {"movierec-ingestor": [8091, 9101], "movierec-router": [8082],
                     "movierec-model-server": [8080, 9081], "movierec-drift-online": [8095]}


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_run_to_completion_pods_opt_out_of_istio_sidecars(values_file: Path | None) -> None:
    """In an injection-enabled namespace a sidecar never exits, so Jobs and Argo steps would hang."""
    for o in rendered(values_file):
        if o["kind"] == "CronJob":
            annotations = o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
        elif o["kind"] == "WorkflowTemplate":
            annotations = o["spec"]["podMetadata"]["annotations"]
        else:
            continue
        assert annotations["sidecar.istio.io/inject"] == "false", o["metadata"]["name"]
