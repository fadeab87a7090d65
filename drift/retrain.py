"""The retrain trigger: run the trainer locally, or submit the Argo training workflow.

On Kubernetes the trigger creates a ``Workflow`` that references the ``movierec-train``
``WorkflowTemplate`` (the chart ships it) through the API server with the ``kubernetes``
client (in-cluster service account, else ~/.kube/config); without a cluster (or with
``submit=false``) it prints the object instead.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import yaml

from drift.config import RetrainConfig


def render_workflow(cfg: RetrainConfig, reasons: list[str], report_path: str = "") -> dict:
    """The Workflow object that runs the training WorkflowTemplate."""
    parameters = [{"name": k, "value": str(v)} for k, v in sorted(cfg.arguments.items())]
    parameters.append({"name": "drifted_detectors", "value": ",".join(reasons)})
    if report_path:
        parameters.append({"name": "drift_report", "value": report_path})
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{cfg.workflow_template}-drift-",
            "namespace": cfg.namespace,
            "labels": {
                "app.kubernetes.io/part-of": "movierec",
                "app.kubernetes.io/component": "drift",
                "movierec/trigger": "drift",
            },
        },
        "spec": {
            "workflowTemplateRef": {"name": cfg.workflow_template},
            "serviceAccountName": cfg.service_account,
            "arguments": {"parameters": parameters},
        },
    }


def submit_workflow(workflow: dict, namespace: str) -> dict:
    """Create the Workflow via the Kubernetes API; raises when no cluster is configured."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CustomObjectsApi()
    return api.create_namespaced_custom_object(
        group="argoproj.io", version="v1alpha1", namespace=namespace, plural="workflows",
        body=workflow,
    )


def local_command(cfg: RetrainConfig) -> list[str]:
    return [sys.executable if part == "{python}" else part for part in cfg.command]


def trigger_retrain(
    cfg: RetrainConfig,
    reasons: list[str],
    report_path: str = "",
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    submit: Callable[[dict, str], dict] = submit_workflow,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start a retrain for drift in ``reasons``; returns what was done (for the report)."""
    started = time.time()
    if cfg.mode == "local":
        cmd = local_command(cfg)
        proc = run(cmd, capture_output=True, text=True, timeout=cfg.timeout_s)
        return {
            "mode": "local", "command": cmd, "returncode": proc.returncode,
            "ok": proc.returncode == 0, "duration_s": round(time.time() - started, 3),
            "stderr_tail": (proc.stderr or "")[-2000:],
        }
    if cfg.mode == "kubernetes":
        workflow = render_workflow(cfg, reasons, report_path)
        if cfg.submit:
            try:
                created = submit(workflow, cfg.namespace)
            except Exception as exc:  # noqa: BLE001 - refused, no cluster, API down: all fail
                # a retrain that was asked for and did not start is a failure, not a printout
                error = f"{type(exc).__name__}: {exc}"[:2000]
                echo(f"retrain: FAILED to submit the workflow: {error}")
                return {"mode": "kubernetes", "submitted": False, "ok": False, "error": error,
                        "workflow": workflow}
            name = (created or {}).get("metadata", {}).get("name", "")
            return {"mode": "kubernetes", "submitted": True, "ok": True, "workflow": name}
        echo(yaml.safe_dump(workflow, sort_keys=False))
        return {"mode": "kubernetes", "submitted": False, "ok": True, "workflow": workflow}
    raise ValueError(f"unknown retrain mode {cfg.mode!r}")
