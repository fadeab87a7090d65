"""Fixtures for the Kubernetes delivery tests: the project's own helm and kubeconform,
renders of the chart for every ci/*-values.yaml, and the objects in them.

helm and kubeconform are built by `make k8s-tools` (scripts/install-k8s-tools.sh); when they
are missing the tests fail with that instruction instead of skipping.
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
CHART = REPO_ROOT / "charts" / "movierec"
CACHE = REPO_ROOT / ".cache"
HELM = CACHE / "bin" / "helm"
KUBECONFORM = CACHE / "bin" / "kubeconform"
SCHEMA_LOCATIONS = (
    str(CACHE / "k8s-schemas" / "core" / "{{.ResourceKind}}{{.KindSuffix}}.json"),
    str(SHARED_DIR / "schemas" / "crds" / "{{.Group}}" / "{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"),
    str(CACHE / "k8s-schemas" / "crds" / "{{.Group}}" / "{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"),
)
CI_VALUES = sorted(CHART.glob("ci/*-values.yaml"))
# every values file rendered by the tests: the chart defaults plus each ci/ mode
RENDER_CASES = [None, *CI_VALUES]
RENDER_IDS = ["defaults", *(p.name.removesuffix("-values.yaml") for p in CI_VALUES)]


def _load_render_tool():
    spec = importlib.util.spec_from_file_location("k8s_render", REPO_ROOT / "tools" / "k8s_render.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


render_tool = _load_render_tool()


def require_tool(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path.relative_to(REPO_ROOT)} is missing: run `make k8s-tools` "
                    "(scripts/install-k8s-tools.sh builds it)", pytrace=False)
    return path


def run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=REPO_ROOT)


@cache
def render(values_file: Path | None, *set_args: str) -> str:
    """The chart rendered (release movierec, namespace movierec) with a values file and --set args."""
    require_tool(HELM)
    extra: list[str] = []
    if values_file is not None:
        extra += ["-f", str(values_file)]
    for arg in set_args:
        extra += ["--set", arg]
    return render_tool.template(*extra)


def objects(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) for every pod an object creates, in the shape each API nests it."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield kind, spec["template"]["spec"]
    elif kind == "CronJob":
        yield kind, spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "InferenceService":
        yield "predictor", spec["predictor"]
        for i, canary in enumerate(spec.get("canary", [])):
            yield f"canary[{i}]", canary["predictor"]


def containers_of(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, container) for every container the chart defines, Argo steps and runtimes included."""
    kind, spec = obj["kind"], obj.get("spec", {})
    for where, pod in pod_specs(obj):
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            yield f"{where}/{c['name']}", c
        if "model" in pod:
            yield f"{where}/model", pod["model"]
    if kind == "ServingRuntime":
        for c in spec["containers"]:
            yield f"runtime/{c['name']}", c
    if kind == "WorkflowTemplate":
        for tpl in spec["templates"]:
            for key in ("container", "script"):
                if key in tpl:
                    yield f"template/{tpl['name']}", tpl[key]


@pytest.fixture(scope="session")
def helm() -> Path:
    return require_tool(HELM)


@pytest.fixture(scope="session")
def kubeconform() -> Path:
    require_tool(KUBECONFORM)
    for needed in (CACHE / "k8s-schemas" / "core" / "deployment-apps-v1.json",
                   CACHE / "k8s-schemas" / "crds" / "serving.kserve.io" / "inferenceservice_v1beta1.json",
                   SHARED_DIR / "schemas" / "crds" / "argoproj.io" / "workflowtemplate_v1alpha1.json"):
        if not needed.exists():
            pytest.fail(f"{needed} is missing: run `make k8s-tools`", pytrace=False)
    return KUBECONFORM


@pytest.fixture(scope="session")
def render_chart() -> Callable[..., str]:
    return render
