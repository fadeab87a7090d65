"""A/A study (and A/B power) of the experiment analysis under peeking.

    .venv/bin/python bench/aa_study.py            # 1,000 A/A experiments, the power table
    .venv/bin/python bench/aa_study.py --quick    # 200, no power table (never published)

Simulated experiments calibrated like the outside check of issue 20 (2,000 users split 50/50,
about 4 requests each, per-user watch propensities Beta(2, 3)), analysed after each of 6
windows by the old per-request fixed test and by the user-level sequential analysis the
canary uses (``experiments.aa_study``); then the same A/A study calibrated to the simulator
(its per-user request counts, drawn as they are, and a Beta fitted to its users'
watch-through over 480 simulated minutes, ``calibrate_from_simulator``). Writes
``bench/results/aa_study.json``. Targets: the sequential analysis at <= 5 % false positives
with peeking and >= 94 % coverage, in both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_result  # noqa: E402
from experiments.aa_study import (  # noqa: E402
    StudySettings,
    calibrate_from_simulator,
    power_table,
    run_study,
)


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
    cal = calibrate_from_simulator(n_users=1000 if args.quick else 3000,
                                   minutes=240 if args.quick else 480, join_window_s=3600)
    sim_settings = cal.settings(experiments=s.experiments, seed=s.seed + 1)
    sim = run_study(sim_settings)
    sim_seq = sim["user_sequential"]
    print(f"A/A calibrated to the simulator ({cal.users:,} users, {cal.requests / cal.users:.2f} "
          f"requests each, watch-through {cal.watch_through:.3f}, Beta({cal.beta[0]:.2f}, "
          f"{cal.beta[1]:.2f})): per-request fixed "
          f"{sim['per_request_fixed']['rejection_rate']:.1%}, user-level sequential "
          f"{sim_seq['rejection_rate']:.1%} ({sim_seq['coverage']:.1%} coverage)")
    path = write_result("aa_study", {
        "settings": {**{k: v for k, v in s.__dict__.items() if k != "request_counts"},
                     "beta": list(s.beta)}, "aa": aa, "power": power,
        "simulator": {"calibration": {
            "users": cal.users, "requests": cal.requests, "watch_through": cal.watch_through,
            "beta": list(cal.beta), "simulated_minutes": cal.minutes, "world_seed": cal.seed,
            "join_window_s": 3600, "max_requests_per_user": max(cal.counts)},
            "aa": sim},
        "seconds": round(time.perf_counter() - t0, 1)}, {
        "user_sequential false positive rate <= 5 % (calibrated to the simulator)":
            sim_seq["rejection_rate"] <= 0.05,
        "user_sequential coverage >= 94 % (calibrated to the simulator)":
            sim_seq["coverage"] >= 0.94,
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
