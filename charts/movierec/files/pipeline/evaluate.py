"""Argo `evaluate` step: the bundle the train step wrote (not registered yet) against the
champion in the registry.

    python evaluate.py <bundle_dir> <the platform's Hydra overrides>

Prints one JSON object, the step's `outputs.result`, for the quality gate:
{"bundle_dir", "model_type", "ndcg_at_10", "champion_version", "champion_ndcg_at_10"}; the
champion fields are null when there is no champion yet (this will be the first model).
"""

import json
import subprocess
import sys
from pathlib import Path

BUNDLE = Path(sys.argv[1])
TRAINER_ARGS = sys.argv[2:]  # data.registry_root=... trainer.model_name=...


def ndcg_at_10(manifest):
    metrics = manifest.get("metrics") or {}
    value = metrics.get("ndcg@10")
    if value is None:
        value = (metrics.get("warm") or {}).get("ndcg@10")
    return None if value is None else float(value)


manifest_path = BUNDLE / "manifest.json"
if not manifest_path.is_file():
    sys.exit(f"evaluate: {BUNDLE} is not a bundle (no manifest.json)")
manifest = json.loads(manifest_path.read_text())
proc = subprocess.run([sys.executable, "-m", "trainer", "show", "champion", *TRAINER_ARGS],
                      capture_output=True, text=True)
champion = json.loads(proc.stdout) if proc.returncode == 0 else None
if champion is None:
    print(f"evaluate: no champion yet ({proc.stderr.strip()[-200:]})", file=sys.stderr)
print(json.dumps({
    "bundle_dir": str(BUNDLE),
    "model_type": manifest.get("model_type"),
    "ndcg_at_10": ndcg_at_10(manifest),
    "champion_version": None if champion is None else champion["version"],
    "champion_ndcg_at_10": None if champion is None else ndcg_at_10(champion.get("manifest") or champion),
}))
