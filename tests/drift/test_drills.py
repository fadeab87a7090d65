"""Simulator drills (issue 9, "checked by"): 20 seeds, shipped detector config.

* no injected drift: at most 5 % false alarms (1 of 20 windows);
* taste shift / demographic shift of sign-ups: raised within one window in >= 95 % of seeds.
"""

from __future__ import annotations

import pytest

from drift.config import register_configs
from movierec_core.config import compose
from tests.drift.drills import run_seed

SEEDS = range(20)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outcomes() -> dict[str, list[bool]]:
    register_configs()
    cfg = compose("drift", []).drift
    kwargs = dict(detectors=list(cfg.detectors), p_val=cfg.p_val, correction=cfg.correction,
                  min_samples=cfg.min_samples, max_samples=cfg.max_samples,
                  max_per_user=cfg.max_per_user, seed=cfg.seed,
                  max_per_user_by_detector=dict(cfg.max_per_user_by_detector))
    raised: dict[str, list[bool]] = {}
    for seed in SEEDS:
        for outcome in run_seed(seed, **kwargs):
            raised.setdefault(outcome.scenario, []).append(outcome.run.is_drift)
            if outcome.run.is_drift != (outcome.scenario != "none"):
                print(f"seed {seed} {outcome.scenario}: drifted={outcome.run.drifted()}")
    print({k: f"{sum(v)}/{len(v)}" for k, v in raised.items()})
    return raised


def test_no_drift_false_alarm_rate_at_most_5_percent(outcomes) -> None:
    assert sum(outcomes["none"]) <= 0.05 * len(SEEDS)


@pytest.mark.parametrize("scenario", ["taste_shift", "signup_shift"])
def test_injected_drift_detected_within_one_window_in_95_percent(outcomes, scenario) -> None:
    assert sum(outcomes[scenario]) >= 0.95 * len(SEEDS)
