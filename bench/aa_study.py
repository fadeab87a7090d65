"""A/A study (and A/B power) of the experiment analysis under peeking.

    .venv/bin/python bench/aa_study.py            # 1,000 A/A experiments, the power table
    .venv/bin/python bench/aa_study.py --quick    # 200, no power table (never published)

Simulated experiments calibrated like the outside check of issue 20 (2,000 users split 50/50,
about 4 requests each, per-user watch propensities Beta(2, 3)), analysed after each of 6
windows by the old per-request fixed test and by the user-level sequential analysis the
canary uses (``experiments.aa_study``). Writes ``bench/results/aa_study.json``. Targets: the
sequential analysis at <= 5 % false positives with peeking and >= 94 % coverage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_result  # noqa: E402
from experiments.aa_study import StudySettings, power_table, run_study  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    s = StudySettings(experiments=200 if args.quick else 1000)
    aa = run_study(s)
    power = [] if args.quick else power_table(base=s)
    seq, old = aa["user_sequential"], aa["per_request_fixed"]
    print(f"A/A, {s.experiments} experiments, {s.looks} looks: per-request fixed test "
          f"{old['rejection_rate']:.1%} false positives ({old['coverage']:.1%} coverage); "
          f"user-level sequential {seq['rejection_rate']:.1%} ({seq['coverage']:.1%})")
    for row in power:
        print(f"  lift {row['lift']:+.2f}, {row['users']:>5,} users: power "
              f"{row['power_user_sequential']:.0%}")
    path = write_result("aa_study", {
        "settings": {**s.__dict__, "beta": list(s.beta)}, "aa": aa, "power": power,
        "seconds": round(time.perf_counter() - t0, 1)}, {
        "user_sequential false positive rate <= 5 % with peeking": seq["rejection_rate"] <= 0.05,
        "user_sequential coverage >= 94 %": seq["coverage"] >= 0.94,
        "user_sequential_cuped false positive rate <= 5 %":
            aa["user_sequential_cuped"]["rejection_rate"] <= 0.05,
        "CUPED reduces the variance": aa["user_sequential_cuped"]["variance_reduction"] > 0,
    }, quick=args.quick)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
