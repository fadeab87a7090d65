"""The soak's recovery figure (issue 22): the served model's ratio to the oracle before the
drift, and after it each of the two retrains' (the drift retrain's, the next one's), as
challenger then champion; and the order of the soak's canaries."""

from __future__ import annotations

import pandas as pd

from demo.soak import Soak, SoakSettings, recovery, to_markdown


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
CANARIES = [{"kind": "promotion", "version": "v3", "outcome": "promoted", "decided_minute": 240},
            {"kind": "rollback", "outcome": "rolled_back", "decided_minute": 290}]


def test_recovery_follows_the_drift_retrained_model_from_challenger_to_champion() -> None:
    r = recovery(HOURLY, 120, TRAININGS, CANARIES)
    assert r["pre_drift_ratio"] == 0.79 and r["pre_drift_hours"] == [0, 1]
    assert r["after_retrain"] == [
        {"hour": 3, "version": "v3", "arm": "router · challenger", "ratio": 0.7},
        {"hour": 4, "version": "v3", "arm": "router · champion", "ratio": 0.75}]
    assert r["after_retrain_ratio"] == 0.725 and r["judged_version"] == "v3"
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
    assert "| 4 | v3 | router · champion | 0.750 |" in md
    assert "Judged on v3 (the newest of the two retrains promoted): 0.725 = **92%**" in md


# the drift at minute 120; v3 (drift retrain, 180) promoted at 240; v4 (the next, 300) in its
# own canary from 300, promoted at 420; the rollback drill after it shows its random challenger
TWO = _hourly([
    (0, "oracle", 1.0), (0, "router · champion", 0.80),
    (1, "oracle", 1.0), (1, "router · champion", 0.80),
    (3, "oracle", 1.0), (3, "router · champion", 0.55), (3, "router · challenger", 0.66),
    (4, "oracle", 1.0), (4, "router · champion", 0.68),
    (5, "oracle", 1.0), (5, "router · champion", 0.66), (5, "router · challenger", 0.74),
    (6, "oracle", 1.0), (6, "router · champion", 0.67), (6, "router · challenger", 0.76),
    (7, "oracle", 1.0), (7, "router · champion", 0.75), (7, "router · challenger", 0.10),
])
TWO_CANARIES = [{"kind": "promotion", "version": "v3", "outcome": "promoted", "decided_minute": 240},
                {"kind": "promotion", "version": "v4", "outcome": "promoted", "decided_minute": 420},
                {"kind": "rollback", "version": "random", "outcome": "rolled_back",
                 "decided_minute": 440}]


def test_recovery_is_judged_on_the_second_retrain_once_it_is_promoted() -> None:
    r = recovery(TWO, 120, TRAININGS, TWO_CANARIES)
    assert [(x["hour"], x["version"], x["arm"].split(" · ")[1]) for x in r["after_retrain"]] == [
        (3, "v3", "challenger"), (4, "v3", "champion"), (5, "v3", "champion"),
        (6, "v3", "champion"),  # v4 is promoted at 7.0 h: v3 is the champion until then
        (5, "v4", "challenger"), (6, "v4", "challenger"), (7, "v4", "champion")]
    v3, v4 = r["by_retrain"]
    assert v3["ratio"] == round((0.66 + 0.68 + 0.66 + 0.67) / 4, 4) and v3["promoted"]
    assert v4["ratio"] == round((0.74 + 0.76 + 0.75) / 3, 4) and v4["hours"] == 3
    assert r["judged_version"] == "v4" and r["after_retrain_ratio"] == v4["ratio"]
    assert r["recovered"] is True  # 0.75 >= 0.9 * 0.8; v3 alone (0.6675) is not
    # the second retrain rolled back: the champion stayed v3, and v3 is judged
    rolled = [dict(TWO_CANARIES[0]), {**TWO_CANARIES[1], "outcome": "rolled_back"}]
    r2 = recovery(TWO, 120, TRAININGS, rolled)
    assert r2["judged_version"] == "v3" and r2["recovered"] is False
    assert [x["hour"] for x in r2["after_retrain"] if x["version"] == "v3"] == [3, 4, 5, 6, 7]
    assert [x["hour"] for x in r2["after_retrain"] if x["version"] == "v4"] == [5, 6]


def _soak_at(t: int, trainings: list[dict], canaries: list[dict], **settings) -> Soak:
    soak = Soak.__new__(Soak)  # the ordering reads only these
    soak.s = SoakSettings(**settings)
    soak.t, soak.trainings, soak.canaries = t, trainings, canaries
    soak.drift_retrained_version = next((x["version"] for x in trainings
                                         if x["trigger"] == "drift"), None)
    return soak


def test_canaries_run_promotion_then_the_next_retrains_promotion_then_the_rollback_drill() -> None:
    first = [{"minute": 0, "trigger": "first", "version": "v1"}]
    drift = first + [{"minute": 240, "trigger": "drift", "version": "v4"}]
    assert _soak_at(200, first, []).next_canary() is None  # no retrain yet
    assert _soak_at(240, drift, []).next_canary() == ("promotion", "v4")
    promoted = [{"kind": "promotion", "version": "v4", "outcome": "promoted"}]
    assert _soak_at(500, drift, promoted).next_canary() is None  # waits for the next retrain
    # ...unless the loop's time is up: then the drill, and no second promotion after it
    assert _soak_at(600, drift, promoted).next_canary() == ("rollback", "random")
    drilled = promoted + [{"kind": "rollback", "version": "random", "outcome": "rolled_back"}]
    assert _soak_at(620, drift + [{"minute": 620, "trigger": "scheduled", "version": "v5"}],
                    drilled).next_canary() is None
    later = drift + [{"minute": 570, "trigger": "scheduled", "version": "v5"}]
    assert _soak_at(570, later, promoted).next_canary() == ("promotion", "v5")
    both = promoted + [{"kind": "promotion", "version": "v5", "outcome": "promoted"}]
    assert _soak_at(800, later, both).next_canary() == ("rollback", "random")
    done = both + [{"kind": "rollback", "version": "random", "outcome": "rolled_back"}]
    assert _soak_at(830, later, done).next_canary() is None
    # without the second promotion, or when the first was rolled back: the drill next
    assert _soak_at(570, later, promoted, second_promotion=False).next_canary() == (
        "rollback", "random")
    rolled = [{"kind": "promotion", "version": "v4", "outcome": "rolled_back"}]
    assert _soak_at(570, later, rolled).next_canary() == ("rollback", "random")
