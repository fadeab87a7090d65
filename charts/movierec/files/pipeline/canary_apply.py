"""Apply the canary controller's InferenceService patches to the cluster (Argo canary step).

``python -m experiments canary`` with ``experiments.canary.target=kserve`` decides the rollout
(steps, windows, verdicts, registry promotion) and writes one JSON merge patch per traffic
change into ``experiments.canary.kserve_patch_dir``; it does not talk to the Kubernetes API.
This wrapper runs it, and applies each new patch to this release's InferenceService with
the step's ServiceAccount (RBAC: get/patch on that one object). The controller's canary
predictor only names the alias, so each patch gets the chart's full predictor instead
(runtime, storageUri, args, resources, security context: ``predictors.json``).
When the controller exits, the canary is cleared: after a promotion the champion alias
already points at the new version (the model server hot-swaps), after a rollback at the old.

    python canary_apply.py --config /opt/movierec/pipeline -- python -m experiments canary ...

Standard library only: it runs in the experiments image.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def translate(patch: dict[str, Any], mode: str, primary: dict[str, Any],
              canary: dict[str, Any]) -> dict[str, Any]:
    """The controller's patch with the chart's predictors in place of its minimal one."""
    spec = patch.get("spec", {})
    if mode == "standard":
        entries = spec.get("canary", [])
        if not entries:
            return {"spec": {"canary": []}}
        return {"spec": {"canary": [{"trafficPercent": int(entries[0]["trafficPercent"]),
                                     "predictor": canary}]}}
    percent = int(spec.get("predictor", {}).get("canaryTrafficPercent", 0))
    if percent <= 0:
        return clear(mode, primary)
    return {"spec": {"predictor": {**canary, "canaryTrafficPercent": percent}}}


def clear(mode: str, primary: dict[str, Any]) -> dict[str, Any]:
    """Back to the primary predictor alone (it serves the champion alias)."""
    if mode == "standard":
        return {"spec": {"canary": []}}
    return {"spec": {"predictor": {**primary, "canaryTrafficPercent": None}}}


class Api:
    """Merge-patches one InferenceService through the in-cluster API."""

    def __init__(self, namespace: str, name: str) -> None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.url = (f"https://{host}:{port}/apis/serving.kserve.io/v1beta1/namespaces/"
                    f"{namespace}/inferenceservices/{name}")
        self.token = (SA_DIR / "token").read_text().strip()
        self.context = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))

    def patch(self, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), method="PATCH",
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/merge-patch+json"})
        with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
            response.read()


def apply_new(patch_dir: Path, seen: set[str], api: Any, mode: str, primary: dict[str, Any],
              canary: dict[str, Any]) -> int:
    """Apply the patches written since the last call, in order; return how many."""
    applied = 0
    for path in sorted(patch_dir.glob("*.json")) if patch_dir.exists() else []:
        if path.name in seen:
            continue
        body = translate(json.loads(path.read_text()), mode, primary, canary)
        api.patch(body)
        seen.add(path.name)
        applied += 1
        print(f"canary-apply: {path.name} -> {json.dumps(body)[:200]}", file=sys.stderr, flush=True)
    return applied


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True,
                        help="directory with settings.json and predictors.json")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    settings = json.loads((args.config / "settings.json").read_text())
    predictors = json.loads((args.config / "predictors.json").read_text())
    mode, patch_dir = settings["mode"], Path(settings["patch_dir"])
    api = Api(settings["namespace"], settings["inference_service"])
    seen: set[str] = set()
    child = subprocess.Popen(command)
    try:
        while child.poll() is None:
            apply_new(patch_dir, seen, api, mode, predictors["primary"], predictors["canary"])
            time.sleep(2)
        apply_new(patch_dir, seen, api, mode, predictors["primary"], predictors["canary"])
    finally:
        if child.poll() is None:
            child.terminate()
        api.patch(clear(mode, predictors["primary"]))
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
