"""The soak's recovery figure (issue 22): the served model's ratio to the oracle before the
drift, and the drift-retrained model's after it, challenger then champion."""

from __future__ import annotations

import pandas as pd

from demo.soak import recovery, to_markdown


def _hourly(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([(h, a, m, 100) for h, a, m in rows],
                        columns=["bucket", "arm", "mean", "count"])


HOURLY = _hourly([
    (0, "oracle", 1.0), (0, "router · champion", 0.80),
    (1, "oracle", 1.0), (1, "router · champion", 0.78),
    (2, "oracle", 0.98), (2, "router · champion", 0.57),  # drift at minute 120
    (3, "oracle", 1.0), (3, "router · champion", 0.58), (3, "router · challenger", 0.70),
    (4, "oracle", 1.0), (4, "router · champion", 0.75), (4, "router · challenger", 0.10),
])
TRAININGS = [{"minute": 60, "trigger": "scheduled", "version": "v2", "half_life_h": 0.0},
             {"minute": 180, "trigger": "drift", "version": "v3", "half_life_h": 3.0,
              "user_half_life_h": None},
             {"minute": 300, "trigger": "scheduled", "version": "v4", "half_life_h": 0.0,
              "user_half_life_h": 1.0}]
CANARIES = [{"kind": "promotion", "outcome": "promoted", "decided_minute": 240},
            {"kind": "rollback", "outcome": "rolled_back", "decided_minute": 290}]


def test_recovery_follows_the_drift_retrained_model_from_challenger_to_champion() -> None:
    r = recovery(HOURLY, 120, TRAININGS, CANARIES)
    assert r["pre_drift_ratio"] == 0.79 and r["pre_drift_hours"] == [0, 1]
    assert r["after_retrain"] == [{"hour": 3, "arm": "router · challenger", "ratio": 0.7},
                                  {"hour": 4, "arm": "router · champion", "ratio": 0.75}]
    assert r["after_retrain_ratio"] == 0.725
    assert r["share_of_pre_drift"] == round(0.725 / 0.79, 4)
    assert r["recovered"] is True  # 0.725 >= 0.9 * 0.79 = 0.711
    assert [t["version"] for t in r["retrains_after_drift"]] == ["v3", "v4"]


def test_no_recovery_when_the_retrained_model_stays_low_or_never_came() -> None:
    low = HOURLY.copy()
    low.loc[(low["bucket"] == 4) & (low["arm"] == "router · champion"), "mean"] = 0.6
    assert recovery(low, 120, TRAININGS, CANARIES)["recovered"] is False
    none = recovery(HOURLY, 120, [t for t in TRAININGS if t["trigger"] != "drift"], CANARIES)
    assert none["recovered"] is False and "no drift retrain" in none["reason"]


def test_the_report_shows_the_recovery_table() -> None:
    r = recovery(HOURLY, 120, TRAININGS, CANARIES)
    report = {"settings": {"users": 10, "history_minutes": 60, "segment_minutes": 30,
                           "router_share": 0.8},
              "loop_minutes": 300, "wall_s": 60, "checks": {}, "events_timeline": [],
              "events": {"valid_by_kind": {}, "produced_lines": 0, "duplicates_delivered": 0,
                         "dlq_records": 0, "invalid_produced": 0, "reconciled": True},
              "models": {"versions": []}, "trainings": TRAININGS, "drift_runs": [],
              "canaries": [], "availability": {"requests": 0, "failed": 0, "success_rate": 1.0,
                                               "worst_hour_success_rate": 1.0, "p50_ms": 1.0,
                                               "p99_ms": 1.0, "over_600ms": 0},
              "watch_through": {}, "recovery": r, "timings_s": {}}
    md = to_markdown(report, HOURLY)
    assert "Champion / oracle before the drift: **0.790**" in md
    assert ("v3 (drift, at 3.0 h, half-life 3 h, users' own none); "
            "v4 (scheduled, at 5.0 h, half-life none, users' own 1 h)") in md
    assert "| 4 | router · champion | 0.750 |" in md
    assert "= **92%** of the pre-drift ratio" in md
