"""helm lint + template of every values mode, validated by kubeconform -strict offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.k8s.conftest import (
    CHART,
    CI_VALUES,
    RENDER_CASES,
    RENDER_IDS,
    SCHEMA_LOCATIONS,
    objects,
    render,
    run,
)

EXPECTED_MODES = {"standard", "knative", "canary", "ab", "minimal"}


def test_ci_values_cover_every_mode() -> None:
    modes = {p.name.removesuffix("-values.yaml") for p in CI_VALUES}
    assert EXPECTED_MODES <= modes


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_helm_lint_strict(helm: Path, values_file: Path | None) -> None:
    from tests.k8s.conftest import render_tool

    cmd = [str(helm), "lint", str(CHART), "--strict", "--kube-version", render_tool.KUBE_VERSION]
    if values_file is not None:
        cmd += ["-f", str(values_file)]
    proc = run(cmd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_render_validates_strictly(kubeconform: Path, values_file: Path | None) -> None:
    manifest = render(values_file)
    cmd = [str(kubeconform), "-strict", "-summary", "-verbose", "-output", "json"]
    for location in SCHEMA_LOCATIONS:
        cmd += ["-schema-location", location]
    proc = run([*cmd, "-"], stdin=manifest)
    report = json.loads(proc.stdout)
    problems = [f"{r['kind']}/{r['name']}: {r['status']} {r.get('msg', '')}"
                for r in report["resources"] if r["status"] != "statusValid"]
    summary = report["summary"]
    assert problems == [], "\n".join(problems)
    assert proc.returncode == 0, proc.stderr
    # nothing skipped, every object rendered was validated against a schema
    assert summary["skipped"] == 0 and summary["errors"] == 0 and summary["invalid"] == 0
    assert summary["valid"] == len(objects(manifest)) > 0


def test_kubeconform_rejects_a_misspelt_field(kubeconform: Path) -> None:
    """Guards the guard: strict schemas must reject unknown fields in core and CRD objects."""
    manifest = render(None)
    broken = (manifest.replace("revisionHistoryLimit: 3", "revisionHistoryLimt: 3", 1)
              .replace("scaleTarget: 70", "scaleTargt: 70", 1)
              .replace("depends: train", "dependz: train", 1))
    cmd = [str(kubeconform), "-strict", "-summary", "-verbose", "-output", "json"]
    for location in SCHEMA_LOCATIONS:
        cmd += ["-schema-location", location]
    report = json.loads(run([*cmd, "-"], stdin=broken).stdout)
    invalid = sorted(r["kind"] for r in report["resources"] if r["status"] == "statusInvalid")
    assert invalid == ["Deployment", "InferenceService", "WorkflowTemplate"]


def test_generated_workflows_and_manifests_validate(kubeconform: Path) -> None:
    repo = CHART.parents[1]
    cmd = [str(kubeconform), "-strict", "-summary", "-verbose", "-output", "json"]
    for location in SCHEMA_LOCATIONS:
        cmd += ["-schema-location", location]
    proc = run([*cmd, str(repo / "workflows"), str(repo / "manifests")])
    report = json.loads(proc.stdout)
    kinds = sorted({r["kind"] for r in report["resources"]})
    assert proc.returncode == 0, proc.stdout
    assert {"Workflow", "WorkflowTemplate", "CronWorkflow"} <= set(kinds)
    assert report["summary"]["skipped"] == 0


@pytest.mark.parametrize(
    ("set_args", "message"),
    [
        (("image.tag=latest",), "image/tag"),
        (("modelServer.deploymentMode=Serverless",), "deploymentMode"),
        (("modelServer.canary.trafficPercent=150",), "trafficPercent"),
        (("router.istio.timeout=soon",), "timeout"),
        (("pipeline.schedule.cron=everyday",), "cron"),
        (("containerSecurityContext.readOnlyRootFilesystem=false",), "readOnlyRootFilesystem"),
        (("podSecurityContext.runAsNonRoot=false",), "runAsNonRoot"),
        (("platform.kafka.bootstrap=kafka",), "bootstrap"),
        (("unknownKey=1",), "unknownKey"),
        (("experiment.abTest=true",), "at least two variants"),
        (("experiment.abTest=true", "experiment.variants[0].name=a",
          "experiment.variants[0].weight=60", "experiment.variants[1].name=b",
          "experiment.variants[1].weight=30"), "sum to 100"),
    ],
)
def test_bad_values_are_rejected(helm: Path, set_args: tuple[str, ...], message: str) -> None:
    from tests.k8s.conftest import render_tool

    cmd = [str(helm), "template", "movierec", str(CHART), "--kube-version", render_tool.KUBE_VERSION]
    for arg in set_args:
        cmd += ["--set", arg]
    proc = run(cmd)
    assert proc.returncode != 0
    assert message in proc.stderr
