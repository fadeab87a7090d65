"""Every container the chart renders passes Hydra overrides its package's config accepts.

For each `python -m <package>` container (Deployments, CronJob, ServingRuntime+InferenceService
model args, Argo steps) the overrides are composed with the package's real config, the way
its entry point does, with Argo's `{{...}}` placeholders replaced by sample values (Argo
substitutes them before the container starts). A misspelt or removed key fails here instead
of in a crash-looping pod.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.k8s.conftest import RENDER_CASES, RENDER_IDS, REPO_ROOT, objects, render

PLACEHOLDER = re.compile(r"\{\{[^}]*\}\}")
CONFIG = {  # package -> (register function, config name) as its entry point composes
    "ingestor": ("ingestor.config:register_configs", "ingestor"),
    "model_server": ("model_server.config:register_configs", "model_server"),
    "experiments": ("experiments.config:register_configs", "experiments"),
    "drift": ("drift.config:register_configs", "drift"),
    "trainer": ("trainer.config:register_trainer_config", "trainer"),
}
COMPOSE = """
import importlib, json, sys
from movierec_core.config import compose, split_overrides
cases = json.loads(sys.stdin.read())
failures = []
for case in cases:
    module, func = case["register"].split(":")
    getattr(importlib.import_module(module), func)()
    _, overrides = split_overrides(case["args"])
    if case["package"] == "trainer":
        from trainer.cli import load_config
        compose_it = lambda: load_config(overrides)
    else:
        compose_it = lambda: compose(case["config"], overrides)
    try:
        compose_it()
    except Exception as exc:
        failures.append(f"{case['where']}: {type(exc).__name__}: {exc}")
print(json.dumps(failures))
"""


def _python_m_containers(manifest: str) -> list[dict]:
    cases = []
    runtime_command = None
    for o in objects(manifest):
        if o["kind"] == "ServingRuntime":
            runtime_command = o["spec"]["containers"][0]["command"]
    for o in objects(manifest):
        found = []
        kind, spec = o["kind"], o.get("spec", {})
        if kind == "Deployment":
            # the Python deployables; infrastructure images (Kafka, Redis, Prometheus) run their
            # image's entry point with their own flags
            found = [(c["command"], c.get("args", [])) for c in spec["template"]["spec"]["containers"]
                     if "command" in c]
        elif kind == "CronJob":
            pod = spec["jobTemplate"]["spec"]["template"]["spec"]
            found = [(c["command"], c.get("args", [])) for c in pod["containers"]]
        elif kind == "InferenceService":
            predictors = [spec["predictor"], *(c["predictor"] for c in spec.get("canary", []))]
            found = [(runtime_command, p["model"]["args"]) for p in predictors]
        elif kind == "WorkflowTemplate":
            found = [(t["container"]["command"], t["container"].get("args", []))
                     for t in spec["templates"] if "container" in t]
        for command, args in found:
            if "-m" not in command:
                continue
            package = command[command.index("-m") + 1]
            register, config = CONFIG[package]
            cases.append({"where": f"{kind}/{o['metadata']['name']}/{package}", "package": package,
                          "register": register, "config": config,
                          "args": [PLACEHOLDER.sub("x1", a) for a in args]})
    return cases


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_rendered_overrides_compose_with_the_real_configs(values_file: Path | None) -> None:
    cases = _python_m_containers(render(values_file))
    assert cases
    proc = subprocess.run([sys.executable, "-c", COMPOSE], input=json.dumps(cases), cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_every_deployed_package_is_checked() -> None:
    packages = {c["package"] for c in _python_m_containers(render(None))}
    assert packages == set(CONFIG)
