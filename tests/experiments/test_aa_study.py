"""The A/A study: peeking inflates the old per-request test; the user-level sequential
analysis keeps its error rate and coverage; with a true lift it finds it."""

from __future__ import annotations

import subprocess
import sys

from experiments.aa_study import StudySettings, run_study, true_difference


def test_peeking_inflates_the_old_test_and_not_the_sequential_one() -> None:
    res = run_study(StudySettings(experiments=300, seed=11))
    assert res["per_request_fixed"]["rejection_rate"] >= 0.12  # far above the nominal 5 %
    assert res["user_sequential"]["rejection_rate"] <= 0.05
    assert res["user_sequential"]["coverage"] >= 0.94
    assert res["per_request_fixed"]["coverage"] < 0.9


def test_a_true_lift_is_found_and_covered() -> None:
    s = StudySettings(experiments=100, users=4000, lift=0.08, seed=3)
    res = run_study(s)
    assert res["user_sequential"]["rejection_rate"] >= 0.8
    assert res["user_sequential"]["coverage"] >= 0.94
    assert 0.07 < true_difference(s) <= 0.08  # clipping at 1 takes a little of the lift


def test_the_command_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "experiments", "aa-study", "--experiments", "40"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert "| per_request_fixed |" in out and "| user_sequential |" in out


def test_beta_from_users_recovers_the_propensities_behind_binomial_counts():
    import numpy as np

    from experiments.aa_study import beta_from_users

    rng = np.random.default_rng(11)
    n = 1 + rng.poisson(5, 200_000)
    p = rng.beta(2.0, 3.0, n.size)
    a, b = beta_from_users(rng.binomial(n, p).astype(float), n.astype(float))
    assert abs(a - 2.0) < 0.1 and abs(b - 3.0) < 0.15, (a, b)


def test_calibration_from_the_simulator_counts_its_users_requests():
    from experiments.aa_study import calibrate_from_simulator

    cal = calibrate_from_simulator(n_users=800, minutes=180, join_window_s=1800)
    assert cal.users == len(cal.counts) > 100 and sum(cal.counts) == cal.requests
    assert min(cal.counts) >= 1 and 0 < cal.watch_through < 1
    s = cal.settings(experiments=20, looks=3)
    assert s.users == cal.users and s.request_counts == cal.counts
    res = run_study(s)  # runs on the calibrated generator
    assert set(res) == {"per_request_fixed", "user_sequential", "user_sequential_cuped"}
