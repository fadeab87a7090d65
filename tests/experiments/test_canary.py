"""Canary decisions (pure) and the controller loop against a simulated world (no I/O, no clock)."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta

import pytest

from experiments.assignment import Allocation
from experiments.canary import (
    HOLD,
    PROMOTE,
    ROLLBACK,
    STEP,
    CanaryController,
    KServePatchDriver,
    LinesFileTelemetry,
    Policy,
    decide,
)
from experiments.online import VariantMetrics
from experiments.report import write_report
from movierec_core.events import RecommendationRequest, WatchMinute, format_event
from tests.experiments.test_k8s import CANARY, ISVC

POLICY = Policy(min_requests=50)


def vm(name, requests=200, errors=0, matured=200, watched=60, p99=40.0):
    m = VariantMetrics(name, requests=requests, errors=errors, matured=matured, watched=watched)
    m.latencies_ms = [p99] * requests
    return m


def both(champion, challenger):
    return {"champion": champion, "challenger": challenger}


def test_decide_steps_up_a_challenger_shown_non_inferior_and_holds_while_unsure():
    w = both(vm("champion", matured=2000, watched=600), vm("challenger", matured=2000, watched=590))
    d = decide(POLICY, w, w, "champion", "challenger", 0, 0)
    assert d.action == STEP and d.lift.ci_low > -0.05
    unsure = both(vm("champion"), vm("challenger", watched=55))  # CI reaches below -5 points
    # the last gate (50 -> 100 %) needs non-inferiority shown: hold, then give up
    assert decide(POLICY, unsure, unsure, "champion", "challenger", 2, 0).action == HOLD
    assert decide(POLICY, unsure, unsure, "champion", "challenger", 2, 2).action == ROLLBACK
    # an early step needs only no sign of harm (estimate -2.5 points, CI not below zero)...
    assert decide(POLICY, unsure, unsure, "champion", "challenger", 0, 0).action == STEP
    every = Policy(min_requests=50, non_inferiority="every_step")
    assert decide(every, unsure, unsure, "champion", "challenger", 0, 0).action == HOLD
    # ...and an estimate below the margin holds it there, then rolls it back
    low = both(vm("champion"), vm("challenger", watched=47))
    assert decide(POLICY, low, low, "champion", "challenger", 0, 0).action == HOLD
    assert decide(POLICY, low, low, "champion", "challenger", 0, 2).action == ROLLBACK


def test_decide_rolls_back_on_errors_latency_or_significantly_worse_watch_through():
    ok = vm("champion")
    errs = decide(POLICY, both(ok, vm("challenger", errors=20)), both(ok, vm("challenger")),
                  "champion", "challenger", 0, 0)
    assert errs.action == ROLLBACK and "error rate" in errs.reasons[0]
    slow = decide(POLICY, both(ok, vm("challenger", p99=200)), both(ok, vm("challenger")),
                  "champion", "challenger", 0, 0, p99_over_before=1)  # the second window over
    assert slow.action == ROLLBACK and "p99" in slow.reasons[0]
    worse = decide(POLICY, both(ok, vm("challenger")), both(ok, vm("challenger", watched=5)),
                   "champion", "challenger", 0, 0)
    assert worse.action == ROLLBACK and "watch-through" in worse.reasons[0]


def test_decide_holds_without_enough_matured_requests_then_gives_up():
    thin = both(vm("champion", matured=10, watched=3), vm("challenger", matured=10, watched=3))
    assert decide(POLICY, thin, thin, "champion", "challenger", 0, 0).action == HOLD
    assert decide(POLICY, thin, thin, "champion", "challenger", 0, 5).action == ROLLBACK


def test_decide_last_gate_promotes_only_with_a_significant_lift_when_required():
    strict = Policy(min_requests=50, require_significant_lift=True, max_windows_per_step=2)
    flat = both(vm("champion"), vm("challenger", watched=62))
    assert decide(strict, flat, flat, "champion", "challenger", 2, 0).action == HOLD
    assert decide(strict, flat, flat, "champion", "challenger", 2, 1).action == ROLLBACK
    lift = both(vm("champion", matured=2000, watched=600), vm("challenger", matured=2000, watched=800))
    assert decide(strict, lift, lift, "champion", "challenger", 2, 0).action == PROMOTE
    big_flat = both(vm("champion", matured=2000, watched=600), vm("challenger", matured=2000, watched=610))
    assert decide(POLICY, big_flat, big_flat, "champion", "challenger", 2, 0).action == PROMOTE


class SimulatedWorld:
    """Users ask for recommendations every window; the variant they get follows the driver's
    weights by the sticky hash; a user watches the first recommended movie with the variant's
    probability. Emits EVENTS.md lines (what the controller reads), event time advancing
    ten minutes per window."""

    def __init__(self, experiment, profiles, users=1500, seed=7):
        self.experiment, self.profiles = experiment, profiles
        self.users, self.rng = users, random.Random(seed)
        self.time = datetime(2026, 11, 1, 12, 0)
        self.alloc = Allocation.from_weights({"champion": 100, "challenger": 0})
        self.served: list[int] = []
        self.pending: list[bytes] = []
        self.now = 0.0  # wall clock: one sleep call is one window

    # driver side
    def set_weight(self, pct):
        self.served.append(pct)
        self.alloc = Allocation.from_weights({"champion": 100 - pct, "challenger": pct})

    # telemetry side
    def poll(self):
        lines, self.pending = self.pending, []
        return lines

    def clock(self):
        return self.now

    def sleep(self, _seconds):
        self.now += 600
        for uid in self.rng.sample(range(self.users), 600):
            variant = self.alloc.variant_of(self.experiment, uid)
            p_watch, error_rate, latency = self.profiles[variant]
            t = self.time + timedelta(seconds=self.rng.uniform(0, 600))
            movies = (f"{variant}+movie+{self.rng.randrange(50)}+2000", "other+1999")
            if self.rng.random() < error_rate:
                req = RecommendationRequest(t, uid, "router:8082", 500, (), "boom", latency)
                self.pending.append(format_event(req).encode())
            else:
                req = RecommendationRequest(t, uid, "router:8082", 200, movies, "", latency)
                self.pending.append(format_event(req).encode())
                if self.rng.random() < p_watch:
                    for minute in range(20):
                        self.pending.append(format_event(WatchMinute(
                            t + timedelta(seconds=20 * (minute + 1)), uid, movies[0], minute)).encode())
                    self.pending.append(format_event(WatchMinute(t, uid, "organic+2001", 1)).encode())
        self.time += timedelta(seconds=600)


def run_canary(world, policy, tmp_path, promote=None):
    return CanaryController(
        world.experiment, policy, world, world, join_window_s=600, promote=promote,
        sleep=world.sleep, clock=world.clock, window_s=600, state_path=tmp_path / "canary.json", max_windows=12,
    ).run()


def test_given_a_random_challenger_then_it_is_rolled_back_within_two_windows(tmp_path):
    world = SimulatedWorld("drill-random", {"champion": (0.35, 0.0, 40), "challenger": (0.02, 0.0, 45)})
    result = run_canary(world, Policy(min_requests=20), tmp_path)
    assert result.outcome == "rolled_back"
    assert len(result.windows) <= 2
    assert world.served == [5, 0]
    assert result.windows[-1].decision == ROLLBACK
    assert "watch-through" in result.windows[-1].reasons[0]


def test_given_a_failing_challenger_then_errors_roll_it_back_in_the_first_window(tmp_path):
    world = SimulatedWorld("drill-errors", {"champion": (0.3, 0.0, 40), "challenger": (0.3, 0.3, 40)})
    result = run_canary(world, Policy(min_requests=20), tmp_path)
    assert (result.outcome, len(result.windows), world.served) == ("rolled_back", 1, [5, 0])


def test_given_a_slow_challenger_then_the_p99_rolls_it_back_in_the_second_window(tmp_path):
    # the mean-latency test is set out of the way: the tail rule alone decides here
    tail_only = Policy(min_requests=20, p99_min_requests=20, max_mean_latency_delta_ms=10_000)
    slow = SimulatedWorld("drill-slow", {"champion": (0.3, 0.0, 40), "challenger": (0.3, 0.0, 400)})
    result = run_canary(slow, tail_only, tmp_path)
    assert (result.outcome, slow.served) == ("rolled_back", [5, 0])
    assert [w.decision for w in result.windows] == [HOLD, ROLLBACK]
    assert "1 of 2 windows in a row" in result.windows[0].reasons[0]
    assert "2 of 2 windows in a row" in result.windows[1].reasons[0]


def test_given_one_slow_window_then_the_canary_holds_and_goes_on(tmp_path):
    world = SimulatedWorld("drill-spike", {"champion": (0.3, 0.0, 40), "challenger": (0.3, 0.0, 400)})
    tail_only = Policy(min_requests=20, p99_min_requests=20, max_mean_latency_delta_ms=10_000)
    first_window = world.sleep

    def sleep(seconds):  # slow in the first window only (a cold pod), then like the champion
        first_window(seconds)
        world.profiles["challenger"] = (0.3, 0.0, 42)

    world.sleep = sleep
    result = run_canary(world, tail_only, tmp_path)
    assert result.windows[0].decision == HOLD and "p99" in result.windows[0].reasons[0]
    assert all("p99" not in " ".join(w.reasons) for w in result.windows[1:])
    assert result.outcome == "promoted" and world.served == [5, 25, 50, 100]


def test_given_a_better_challenger_then_it_climbs_the_ladder_and_is_promoted(tmp_path):
    world = SimulatedWorld("drill-better", {"champion": (0.2, 0.0, 40), "challenger": (0.4, 0.0, 42)})
    promoted = []
    policy = Policy(min_requests=20, require_significant_lift=True)
    result = run_canary(world, policy, tmp_path, promote=lambda: promoted.append(True))
    assert result.outcome == "promoted" and promoted == [True]
    assert world.served == [5, 25, 50, 100]
    final = result.windows[-1]
    assert final.lift["ci_low"] > 0
    assert all(math.isnan(w.srm_p_value) or w.srm_p_value > 0.001 for w in result.windows)
    # the state file round-trips into a report
    state = json.loads((tmp_path / "canary.json").read_text())
    assert state["outcome"] == "promoted"
    paths = write_report(tmp_path / "canary.json", tmp_path / "report")
    md = paths[0].read_text()
    assert "**Decision: promoted**" in md and "| 50 | promote |" in md
    # per window: the unit, users per arm, interval, always-valid p, e-value, MDE, SRM, why
    assert final.lift["sequential"] and final.lift["e_value"] >= 1 / 0.05
    inference = md.split("## Inference per window", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in inference.splitlines() if r.startswith("| ") and "| users |" in r]
    watch = [r for r in rows if "| watch-through |" in r]
    errors = [r for r in rows if "| error rate |" in r]
    assert len(watch) == sum(1 for w in result.windows if w.lift) and "promote: " in watch[-1]
    # the error guardrail's user-level interval, every window (no errors: a zero difference)
    assert len(errors) == len(result.windows) and "| +0.000 |" in errors[-1]
    assert paths[1].read_text().startswith("<!doctype html>")
    assert paths[2].stat().st_size > 10_000


def test_the_kserve_driver_writes_a_validated_patch_per_step(tmp_path):
    world = SimulatedWorld("drill-kserve", {"champion": (0.2, 0.0, 40), "challenger": (0.4, 0.0, 42)})
    driver = KServePatchDriver(ISVC, "standard", CANARY, tmp_path / "patches")

    class Both:
        def set_weight(self, pct):
            driver.set_weight(pct)
            world.set_weight(pct)

    result = CanaryController(world.experiment, Policy(min_requests=20), Both(), world,
                              join_window_s=600, sleep=world.sleep,
                              clock=world.clock, window_s=600).run()
    assert result.outcome == "promoted"
    assert [p.name for p in driver.patches] == ["00-canary-5.json", "01-canary-25.json",
                                                "02-canary-50.json", "03-canary-100.json"]
    assert json.loads(driver.patches[1].read_text())["spec"]["canary"][0]["trafficPercent"] == 25


def test_file_telemetry_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"old\n")
    tail = LinesFileTelemetry(path)
    with open(path, "ab") as fh:
        fh.write(b"a\nb\npart")
    assert tail.poll() == [b"a", b"b"]
    with open(path, "ab") as fh:
        fh.write(b"ial\n")
    assert tail.poll() == [b"partial"]


@pytest.mark.parametrize("steps", [(5, 25, 50, 100), (10, 100)])
def test_policy_steps_come_from_config(steps):
    from omegaconf import OmegaConf

    from experiments.config import CanaryConfig

    c = OmegaConf.structured(CanaryConfig(steps=list(steps)))
    assert Policy.from_config(c).steps == steps


def test_movie_costs_come_from_the_metadata_api_in_bulk_and_survive_an_outage():
    from experiments.canary import MovieCosts

    from .helpers import FakeModelServer

    api = FakeModelServer([json.dumps([{"id": "a+2000", "cost": "2.5"}, {"id": "b+2001"},
                                       {"id": "c+2002", "cost": None}])], "-")
    try:
        costs = MovieCosts(api.url)
        assert costs.fetch(["a+2000", "b+2001", "c+2002"]) == {"a+2000": 2.5}
        assert costs.fetch(["a+2000"]) == {"a+2000": 2.5} and api.hits == 1  # cached
    finally:
        api.stop()
    assert MovieCosts(api.url).fetch(["z+1999"]) == {}  # API down: unknown, no exception


# -- on a cluster without a mesh: the router's weights ConfigMap ------------------------------

class FakeConfigMapAPI:
    def __init__(self) -> None:
        self.patches: list[dict] = []

    def patch_configmap(self, name: str, data: dict) -> dict:
        self.patches.append({"name": name, **json.loads(data["weights.json"])})
        return {}


def test_configmap_driver_takes_effect_at_a_whole_minute_after_the_predictor_is_ready():
    from datetime import UTC

    from experiments.canary import RouterConfigMapDriver

    api, slept, readiness = FakeConfigMapAPI(), [], iter([False, False, True])
    driver = RouterConfigMapDriver(
        api, "movierec-router-weights", "control", "canary", ready=lambda: next(readiness),
        sleep=slept.append, now=lambda: datetime(2026, 12, 1, 10, 0, 57, tzinfo=UTC))
    at = driver.set_weight(25)
    # 57 s + 5 s of propagation rounds up to 10:02:00; naive UTC, like the telemetry
    assert at == datetime(2026, 12, 1, 10, 2, 0)
    assert slept == [2.0, 2.0]  # waited for the challenger's predictor
    assert api.patches == [{"name": "movierec-router-weights", "source": "canary",
                            "effective_at": "2026-12-01T10:02:00Z",
                            "weights": {"control": 75.0, "canary": 25.0}}]
    # rolling back needs no readiness
    driver.ready = lambda: False
    driver.set_weight(0)
    assert api.patches[-1]["weights"] == {"control": 100.0, "canary": 0.0}


def test_composite_deploys_before_routing_to_and_routes_away_before_removing():
    from experiments.canary import CompositeDriver

    calls = []

    class Recorder:
        def __init__(self, name, at=None):
            self.name, self.at = name, at

        def set_weight(self, pct):
            calls.append((self.name, pct))
            return self.at

    at = datetime(2026, 12, 1, 10, 2)
    slept = []
    composite = CompositeDriver(Recorder("isvc"), Recorder("router", at), sleep=slept.append,
                                now=lambda: datetime(2026, 12, 1, 10, 1, 30))
    assert composite.set_weight(5) == at and calls == [("isvc", 5), ("router", 5)]
    assert slept == []
    calls.clear()
    assert composite.set_weight(0) == at and calls == [("router", 0), ("isvc", 0)]
    # the challenger's predictor goes only after every router has stopped calling it
    assert slept == [33.0]


def test_effective_history_clock_attributes_requests_by_the_instant_weights_changed(tmp_path):
    """With wall-clock telemetry the weights history changes at the driver's instant, not at
    the newest request the controller happened to have read."""
    from experiments.canary import CanaryController

    change = datetime(2026, 12, 1, 10, 2)

    class Driver:
        def set_weight(self, pct):
            return change if pct != 5 else datetime(2026, 12, 1, 10, 0)

    class NoTelemetry:
        def poll(self):
            return []

    controller = CanaryController("e", POLICY, Driver(), NoTelemetry(), history_clock="effective")
    controller._set_percent(5)
    controller._set_percent(25)
    (first, alloc5), (second, alloc25) = controller.history.changes
    assert first == datetime.min and second == change - timedelta(microseconds=1)
    assert controller.history.allocation_at(change) is alloc25
    assert controller.history.allocation_at(change - timedelta(seconds=1)) is alloc5
    with pytest.raises(ValueError, match="history_clock"):
        CanaryController("e", POLICY, Driver(), NoTelemetry(), history_clock="wall")


def with_users(name, per_user):
    """VariantMetrics whose matured requests come from ``per_user`` [(watched, matured)]."""
    m = vm(name, requests=sum(n for _, n in per_user), matured=sum(n for _, n in per_user),
           watched=sum(w for w, _ in per_user))
    m.users = {uid: [w, n] for uid, (w, n) in enumerate(per_user)}
    return m


def test_decide_judges_users_sequentially_where_per_request_counting_would_roll_back():
    # 40 users per variant making 20 requests each, all-or-nothing watchers (perfectly
    # clustered): 800 "independent" requests per variant to a per-request test, 40 units really
    champion = with_users("champion", [(20, 20)] * 22 + [(0, 20)] * 18)  # 55 %
    challenger = with_users("challenger", [(20, 20)] * 17 + [(0, 20)] * 23)  # 42.5 %
    w = both(champion, challenger)
    old = decide(Policy(min_requests=50, analysis="per_request_fixed"), w, w,
                 "champion", "challenger", 0, 0)
    assert old.action == ROLLBACK and old.lift.ci_high < 0
    new = decide(Policy(min_requests=50), w, w, "champion", "challenger", 0, 0)
    assert new.action == HOLD and new.lift.sequential
    assert new.lift.control_users == new.lift.treatment_users == 40
    assert new.lift.ci_low < 0 < new.lift.ci_high


def test_an_unknown_analysis_is_refused():
    with pytest.raises(ValueError, match="user_sequential, per_request_fixed"):
        Policy(analysis="bayes")


def test_the_pre_period_gives_each_user_a_watch_through_and_cuped_uses_it(tmp_path):
    from experiments.canary import pre_period_watch_through, watch_through_diff

    t0 = datetime(2026, 11, 1, 12, 0)
    lines = []
    for uid, watches in ((1, True), (1, False), (2, True)):
        t0 += timedelta(minutes=90)
        lines.append(format_event(RecommendationRequest(t0, uid, "r:1", 200, ("m+1", "m+2"),
                                                        "", 30)).encode())
        if watches:
            lines += [format_event(WatchMinute(t0 + timedelta(minutes=1 + k), uid, "m+2", k))
                      .encode() for k in range(20)]
    assert pre_period_watch_through(lines, 3600, 15) == {1: 0.5, 2: 1.0}
    # the file telemetry hands the lines before its position to the controller
    path = tmp_path / "movielog.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert LinesFileTelemetry(path).history(10_000) == lines
    # users whose pre-period predicts their outcome: CUPED narrows the interval
    per_user = [(20, 20)] * 22 + [(0, 20)] * 18
    champion, challenger = with_users("champion", per_user), with_users("challenger", per_user)
    pre = {u: 1.0 if w else 0.0 for u, (w, _n) in enumerate(per_user)}
    plain = watch_through_diff(Policy(), champion, challenger)
    adjusted = watch_through_diff(Policy(), champion, challenger, pre)
    assert adjusted.variance_reduction > 0.9 and adjusted.se < plain.se
    assert watch_through_diff(Policy(cuped=False), champion, challenger, pre).se == plain.se


def test_the_p99_guardrail_waits_for_enough_requests_to_have_a_p99():
    ok = vm("champion", p99=77)
    cold = vm("challenger", requests=23, matured=23, watched=7, p99=139)  # one slow request
    d = decide(POLICY, both(ok, cold), both(ok, vm("challenger")), "champion", "challenger", 0, 0)
    assert d.action != ROLLBACK or "p99" not in " ".join(d.reasons)
    slow = vm("challenger", requests=150, matured=150, watched=45, p99=139)
    d = decide(POLICY, both(ok, slow), both(ok, vm("challenger")), "champion", "challenger", 0, 0,
               p99_over_before=1)
    assert d.action == ROLLBACK and "p99" in d.reasons[0]


def test_one_window_over_the_p99_limit_holds_the_step_and_two_in_a_row_roll_back():
    ok, fine = vm("champion", p99=98), vm("challenger", p99=90)
    slow = vm("challenger", p99=153)  # the cluster's: limit max(1.5 x 98, 98 + 50) = 148
    w = both(ok, slow)
    d = decide(POLICY, w, both(ok, fine), "champion", "challenger", 0, 0)
    assert d.action == HOLD and d.p99_over
    assert d.reasons == ["p99 153 ms vs champion 98 ms (limit 148; 1 of 2 windows in a row)"]
    d = decide(POLICY, w, both(ok, fine), "champion", "challenger", 0, 1, p99_over_before=1)
    assert d.action == ROLLBACK and d.reasons[0].endswith("2 of 2 windows in a row)")
    # a window under the limit is not over it; one window suffices with p99_windows=1
    assert not decide(POLICY, both(ok, fine), both(ok, fine), "champion", "challenger", 0, 0).p99_over
    strict = Policy(min_requests=50, p99_windows=1)
    assert decide(strict, w, both(ok, fine), "champion", "challenger", 0, 0).action == ROLLBACK
    # other rollback reasons do not wait for the second window
    worse = decide(POLICY, w, both(ok, vm("challenger", watched=5)), "champion", "challenger", 0, 0)
    assert worse.action == ROLLBACK and "watch-through" in worse.reasons[0]


def users_metrics(name, error_counts, requests_per_user=4, watched_per_user=1):
    """VariantMetrics with per-user counts: ``error_counts[u]`` failed of
    ``requests_per_user`` requests for user ``u``."""
    m = VariantMetrics(name)
    for user, failed in enumerate(error_counts):
        ok = requests_per_user - failed
        m.requests += requests_per_user
        m.errors += failed
        m.error_users[user] = [failed, requests_per_user]
        m.latency_users[user] = [40.0 * requests_per_user, requests_per_user]
        m.matured += ok
        m.watched += min(watched_per_user, ok)
        m.users[user] = [min(watched_per_user, ok), ok]
    m.latencies_ms = [40.0] * m.requests
    return m


def test_error_guardrail_takes_users_as_the_unit_and_keeps_its_error_rate_under_peeking():
    """A challenger with 25 % failed requests is rolled back on the user-level sequential
    interval; one with the champion's error rate (2 %, clustered: some users fail often) is
    not, at any of 20 looks in any of 200 A/A experiments more often than alpha (5 %)."""
    bad = both(users_metrics("champion", [0] * 300), users_metrics("challenger", [1] * 300))
    d = decide(POLICY, bad, bad, "champion", "challenger", 0, 0)
    assert d.action == ROLLBACK and "error rate 0.250 vs champion 0.000" in d.reasons[0]
    assert d.errors.ci_low > 0 and d.errors.sequential
    rng = random.Random(5)
    false_rollbacks = 0
    for _ in range(200):
        ch, cn = [], []
        tripped = False
        for _look in range(20):
            for group in (ch, cn):  # 15 new users per look and group; each user's own rate
                for _ in range(15):
                    p = 0.2 if rng.random() < 0.1 else 0.0  # 10 % of users fail 20 % of the time
                    group.append(sum(rng.random() < p for _ in range(4)))
            w = both(users_metrics("champion", ch), users_metrics("challenger", cn))
            reasons = decide(Policy(min_requests=50, max_error_rate_delta=0.0), w, w,
                             "champion", "challenger", 0, 0).reasons
            if any("error rate" in r for r in reasons):
                tripped = True
                break
        false_rollbacks += tripped
    assert false_rollbacks / 200 <= 0.05, false_rollbacks


def test_mean_latency_and_cost_per_play_take_users_as_the_unit():
    """A challenger 200 ms slower on average is rolled back on the user-level sequential
    interval of mean latency; the same latency is not; cost per play gets a user-level
    (fixed-horizon) interval that is reported, not decided on."""
    ch, cn = users_metrics("champion", [0] * 300), users_metrics("challenger", [0] * 300)
    for user in cn.latency_users:
        cn.latency_users[user][0] += 200.0 * cn.latency_users[user][1]
    slow = both(ch, cn)
    d = decide(POLICY, slow, slow, "champion", "challenger", 0, 0)
    assert d.action == ROLLBACK and any("mean latency 240 ms vs champion 40 ms" in r
                                        for r in d.reasons)
    assert d.latency.sequential and d.latency.ci_low > 50
    same = both(users_metrics("champion", [0] * 300), users_metrics("challenger", [0] * 300))
    for m in same.values():
        for user in list(m.users)[:100]:
            m.cost_users[user] = [2.0 + (user % 3), 1]
    ok = decide(POLICY, same, same, "champion", "challenger", 0, 0)
    assert not any("latency" in r for r in ok.reasons)
    assert ok.latency.diff == 0 and not ok.cost.sequential
    assert ok.cost.control_rate == ok.cost.treatment_rate == pytest.approx(3.0, abs=0.02)
