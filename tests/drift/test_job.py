"""The batch drift job end to end over a lake: report, metrics, retrain trigger."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest
from omegaconf import OmegaConf

from drift import metrics
from drift.config import register_configs
from drift.job import run_job
from drift.retrain import render_workflow
from drift.window import latest_event_time, load_catalog, load_window
from movierec_core.config import SHARED_DIR, compose
from tests.drift.lakeutil import write_catalog, write_window
from tests.drift.world import World


def _cfg(lake_root: Path, *overrides: str):
    register_configs()
    return compose("drift", [f"data.lake_root={lake_root}", "drift.current_hours=1",
                             "drift.reference_hours=1", *overrides])


def _lake(tmp_path: Path, seed: int, shift: bool) -> Path:
    world = World(seed)
    write_window(tmp_path, world.window(0), "w0")
    if shift:
        world.shift_tastes(genre=2, strength=0.6)
    write_window(tmp_path, world.window(1), "w1")
    write_catalog(tmp_path, world.catalog())
    return tmp_path


def test_lake_round_trip_keeps_windows(tmp_path: Path) -> None:
    world = World(3)
    window = world.window(0)
    write_window(tmp_path, window, "w0")
    write_catalog(tmp_path, world.catalog())
    loaded = load_window(tmp_path, window.start, window.end)
    assert loaded.counts() == window.counts()
    assert latest_event_time(tmp_path) == window.watch_minutes["time"].max()
    assert len(load_catalog(tmp_path).users) == len(world.catalog().users)


def test_given_stationary_lake_when_job_runs_then_report_says_no_drift(tmp_path: Path) -> None:
    lake_root = _lake(tmp_path, seed=1, shift=False)
    calls = []
    result = run_job(_cfg(lake_root), run=lambda *a, **k: calls.append(a))
    assert result.run is not None and not result.run.is_drift
    assert calls == []
    report = json.loads(result.report_path.read_text())
    assert result.report_path.parent == lake_root / "_drift"
    assert report["drift"] is False and "retrain" not in report
    assert set(report["detectors"]) == set(OmegaConf.to_container(_cfg(lake_root).drift.detectors))
    assert report["current"]["events"]["watch_minutes"] > 2000
    assert metrics.DRIFT_DETECTED.labels(detector="genre_mix")._value.get() == 0


def test_given_taste_shift_when_job_runs_then_drift_and_configured_trainer_runs(
    tmp_path: Path,
) -> None:
    lake_root = _lake(tmp_path, seed=2, shift=True)
    marker = tmp_path / "trained"
    script = tmp_path / "fake_trainer.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('ok')\n")
    cmd = f"drift.retrain.command=['{{python}}','{script}']"
    before = metrics.RETRAINS._value.get()
    result = run_job(_cfg(lake_root, cmd))
    assert "genre_mix" in result.run.drifted()
    assert marker.read_text() == "ok"
    assert metrics.RETRAINS._value.get() == before + 1
    report = json.loads(result.report_path.read_text())
    assert report["retrain"]["ok"] is True
    assert report["retrain"]["command"][0] == sys.executable
    assert metrics.DRIFT_DETECTED.labels(detector="genre_mix")._value.get() == 1


def test_given_kubernetes_mode_then_workflow_is_submitted(tmp_path: Path) -> None:
    lake_root = _lake(tmp_path, seed=2, shift=True)
    submitted = []

    def submit(workflow, namespace):
        submitted.append((workflow, namespace))
        return {"metadata": {"name": "movierec-train-drift-abcde"}}

    result = run_job(_cfg(lake_root, "drift.retrain.mode=kubernetes"), submit=submit)
    assert result.report["retrain"] == {"mode": "kubernetes", "submitted": True, "ok": True,
                                        "workflow": "movierec-train-drift-abcde"}
    (workflow, namespace), = submitted
    assert namespace == "movierec"
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "movierec-train"}
    params = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert "genre_mix" in params["drifted_detectors"].split(",")


def test_a_failed_submission_is_reported_as_failed(tmp_path: Path) -> None:
    """Before: a refused submission printed the Workflow and reported ok. A retrain that was
    asked for and did not start is a failure: in the report, the log, and the exit code."""
    lake_root = _lake(tmp_path, seed=2, shift=True)
    printed = []

    def refused(workflow, namespace):
        raise RuntimeError('workflows.argoproj.io is forbidden: User "system:serviceaccount:'
                           'movierec:movierec-drift-job" cannot create resource')

    result = run_job(_cfg(lake_root, "drift.retrain.mode=kubernetes"), submit=refused,
                     echo=printed.append)
    retrain = result.report["retrain"]
    assert (retrain["submitted"], retrain["ok"]) == (False, False)
    assert retrain["error"].startswith("RuntimeError: workflows.argoproj.io is forbidden")
    assert any(p.startswith("retrain: FAILED to submit the workflow") for p in printed)
    assert json.loads(result.report_path.read_text())["retrain"]["ok"] is False


def test_printing_the_workflow_instead_of_submitting_is_asked_for(tmp_path: Path) -> None:
    lake_root = _lake(tmp_path, seed=2, shift=True)
    printed = []
    result = run_job(_cfg(lake_root, "drift.retrain.mode=kubernetes",
                          "drift.retrain.submit=false"), echo=printed.append)
    assert result.report["retrain"]["submitted"] is False and result.report["retrain"]["ok"]
    assert any("workflowTemplateRef" in p for p in printed)


def test_rendered_workflow_matches_the_argo_crd_schema() -> None:
    register_configs()
    cfg = compose("drift", [])
    workflow = render_workflow(cfg.drift.retrain, ["genre_mix"], "data/lake/_drift/x.json")
    crd = json.loads(
        (SHARED_DIR / "schemas/crds/argoproj.io/workflowtemplate_v1alpha1.json").read_text())
    # a Workflow's spec is the same WorkflowSpec as a WorkflowTemplate's
    jsonschema.validate(workflow["spec"], crd["properties"]["spec"])
    assert workflow["apiVersion"] == "argoproj.io/v1alpha1" and workflow["kind"] == "Workflow"
    assert workflow["metadata"]["generateName"] == "movierec-train-drift-"


def test_empty_lake_gives_error_report(tmp_path: Path) -> None:
    result = run_job(_cfg(tmp_path))
    assert result.run is None
    assert "no watch-minute events" in result.report["error"]
    assert json.loads(result.report_path.read_text())["error"] == result.report["error"]


@pytest.mark.integration
def test_python_m_drift_runs_and_writes_report(tmp_path: Path) -> None:
    import subprocess

    lake_root = _lake(tmp_path, seed=1, shift=False)
    proc = subprocess.run(
        [sys.executable, "-m", "drift", f"data.lake_root={lake_root}", "drift.current_hours=1",
         "drift.reference_hours=1"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no drift ")
    assert len(list((lake_root / "_drift").glob("*.json"))) == 1


@pytest.mark.integration
def test_long_running_mode_serves_metrics(tmp_path: Path) -> None:
    import subprocess
    import time

    import httpx

    from devstack.ports import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "drift", f"data.lake_root={tmp_path}", f"drift.serve_port={port}",
         "drift.interval_s=0.5"],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = ""
        for _ in range(600):
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
                if 'movierec_drift_runs_total{outcome="error"} 2.0' in body:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert 'movierec_drift_runs_total{outcome="error"} 2.0' in body  # empty lake, twice
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_drift_command_exits_non_zero_when_its_retrain_did_not_start(tmp_path, monkeypatch,
                                                                        capsys) -> None:
    """The CronJob's Job then shows Failed (a silent exit 0 hid it)."""
    from drift.__main__ import main

    lake_root = _lake(tmp_path, seed=2, shift=True)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code = main([f"data.lake_root={lake_root}", "drift.current_hours=1", "drift.reference_hours=1",
                 "drift.retrain.mode=kubernetes"])
    assert code == 3
    assert "drift: the retrain it triggered failed" in capsys.readouterr().err
