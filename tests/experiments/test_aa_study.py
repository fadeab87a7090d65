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
