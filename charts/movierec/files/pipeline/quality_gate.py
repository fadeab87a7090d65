"""Argo `quality-gate` step: fail the run (before any traffic moves) unless the challenger's
NDCG@10 reaches the floor and does not regress against the champion by more than allowed.
Inputs come from the environment Argo sets from the step's parameters."""

import json
import os
import sys

metrics = json.loads(os.environ["METRICS"])
floor = float(os.environ["MIN_NDCG_AT_10"])
max_regression = float(os.environ["MAX_REGRESSION"])
if metrics.get("ndcg_at_10") is None:
    sys.exit("quality gate: the challenger has no ndcg@10")
candidate = float(metrics["ndcg_at_10"])
champion = metrics.get("champion_ndcg_at_10")
print(f"candidate ndcg@10={candidate:.4f} floor={floor} champion={champion}")
if candidate < floor:
    sys.exit(f"quality gate: ndcg@10 {candidate:.4f} < floor {floor}")
if champion is not None and candidate < float(champion) * (1 - max_regression):
    sys.exit(f"quality gate: ndcg@10 {candidate:.4f} regresses more than {max_regression:.0%} "
             f"against champion {float(champion):.4f}")
print("quality gate: passed")
