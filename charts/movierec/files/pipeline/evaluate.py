"""Argo `evaluate` step: the challenger the trainer just registered against the champion.

Reads both from the registry (`python -m trainer show <alias>`) and prints one JSON object,
the step's `outputs.result`, for the quality gate:
{"challenger_version", "ndcg_at_10", "champion_version", "champion_ndcg_at_10"}.
The champion fields are null when the challenger is the first model (it is also champion).
"""

import json
import subprocess
import sys

TRAINER_ARGS = sys.argv[1:]  # the platform's Hydra overrides (data.registry_root=...)


def show(alias):
    proc = subprocess.run([sys.executable, "-m", "trainer", "show", alias, *TRAINER_ARGS],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"evaluate: no {alias}: {proc.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads(proc.stdout)


def ndcg_at_10(info):
    metrics = (info.get("manifest") or {}).get("metrics") or info.get("metrics") or {}
    value = metrics.get("ndcg@10")
    if value is None:
        value = (metrics.get("warm") or {}).get("ndcg@10")
    return None if value is None else float(value)


challenger = show("challenger")
if challenger is None:
    sys.exit("evaluate: the trainer registered no challenger")
champion = show("champion")
same = champion is not None and champion["version"] == challenger["version"]
print(json.dumps({
    "challenger_version": challenger["version"],
    "ndcg_at_10": ndcg_at_10(challenger),
    "champion_version": None if champion is None or same else champion["version"],
    "champion_ndcg_at_10": None if champion is None or same else ndcg_at_10(champion),
}))
