"""Canary rollout: a challenger takes a small share of traffic, and at each analysis window it
is compared with the champion on errors, p99 latency and watch-through; the controller steps
its weight up (5 → 25 → 50 → 100 by default), or rolls it back, and on promotion moves the
registry alias.

:func:`decide` is pure. :class:`CanaryController` owns the loop and talks to the world only
through what it is given: a :class:`TrafficDriver` (the local router's admin API, or the KServe
InferenceService patch), a telemetry source (new EVENTS.md lines), a clock and a sleep.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pyarrow as pa

from experiments import k8s
from experiments.metrics import ExperimentMetrics
from experiments.online import (
    Outcome,
    VariantMetrics,
    WeightsHistory,
    aggregate,
    outcomes,
    per_user_watch_counts,
    requests_and_watches,
)
from experiments.stats import (
    ProportionDiff,
    RatioDiff,
    srm_test,
    two_proportion_test,
    user_level_diff,
)
from movierec_core.batch import parse_lines
from movierec_core.events import RecommendationRequest, WatchMinute

log = logging.getLogger("experiments.canary")

HOLD, STEP, PROMOTE, ROLLBACK = "hold", "step", "promote", "rollback"
ANALYSES = ("user_sequential", "per_request_fixed")


@dataclass(frozen=True)
class Policy:
    steps: tuple[int, ...] = (5, 25, 50, 100)
    min_requests: int = 50
    max_error_rate_delta: float = 0.02
    max_p99_ratio: float = 1.5
    p99_slack_ms: float = 50.0
    alpha: float = 0.05
    require_significant_lift: bool = False
    min_lift: float = 0.0
    max_windows_per_step: int = 3
    max_watch_through_drop: float = 0.05  # step up only if the CI lower bound is above -this
    analysis: str = "user_sequential"  # or per_request_fixed (the old analysis)
    tau: float = 0.05
    cuped: bool = True
    # where the challenger must be shown non-inferior (interval above -max_watch_through_drop):
    # "last_gate" (before 100 %; earlier steps need only no sign of harm: the estimate above
    # -max_watch_through_drop and an interval not below zero) or "every_step"
    non_inferiority: str = "last_gate"
    # the p99 guardrail needs this many requests per variant in the window: the p99 of fewer
    # than 100 is their maximum, one cold request of a fresh predictor (it rolled back a good
    # challenger on the cluster: 139 ms against 77 ms over 23 requests)
    p99_min_requests: int = 100
    # windows in a row over the p99 limit before it rolls back; one over it holds the step (a
    # single window's p99 on a loaded 2-core node swings: 153 ms against 98 ms rolled a good
    # challenger back on the cluster, the window after being fine). Flagger's failed-checks
    # threshold and Argo Rollouts' failureLimit count the same way
    p99_windows: int = 2
    # the mixing standard deviation of the error guardrail's sequential test (the size of an
    # error-rate increase it is most sensitive to)
    error_tau: float = 0.1
    # mean latency, users as the unit (sequential): significantly slower by more than this
    # rolls back (the p99 rule above judges the tail per window)
    max_mean_latency_delta_ms: float = 50.0
    latency_tau_ms: float = 50.0

    def __post_init__(self) -> None:
        if self.non_inferiority not in ("last_gate", "every_step"):
            raise ValueError("experiments.canary.non_inferiority must be last_gate or every_step,"
                             f" not {self.non_inferiority!r}")
        if self.analysis not in ANALYSES:
            raise ValueError(f"experiments.canary.analysis must be one of {', '.join(ANALYSES)}, "
                             f"not {self.analysis!r}")

    @classmethod
    def from_config(cls, c: Any) -> Policy:
        return cls(tuple(int(s) for s in c.steps), int(c.min_requests),
                   float(c.max_error_rate_delta), float(c.max_p99_ratio), float(c.p99_slack_ms),
                   float(c.alpha), bool(c.require_significant_lift), float(c.min_lift),
                   int(c.max_windows_per_step), float(c.max_watch_through_drop),
                   str(c.get("analysis", "user_sequential")), float(c.get("tau", 0.05)),
                   bool(c.get("cuped", True)), str(c.get("non_inferiority", "last_gate")),
                   int(c.get("p99_min_requests", 100)), float(c.get("error_tau", 0.1)),
                   float(c.get("max_mean_latency_delta_ms", 50.0)),
                   float(c.get("latency_tau_ms", 50.0)), int(c.get("p99_windows", 2)))


@dataclass
class Decision:
    action: str
    reasons: list[str]
    lift: ProportionDiff | RatioDiff | None = None
    errors: RatioDiff | None = None  # challenger - champion error rate, users as the unit
    latency: RatioDiff | None = None  # mean response ms, users as the unit (sequential)
    cost: RatioDiff | None = None  # license cost per play, users as the unit (reported only)
    p99_over: bool = False  # the window's p99 was over the limit (the controller counts runs)


def guardrail_diffs(policy: Policy, champion: VariantMetrics, challenger: VariantMetrics,
                    ) -> tuple[RatioDiff | None, RatioDiff | None, RatioDiff | None]:
    """Challenger - champion since the canary started, users as the unit (delta method):
    the error rate (mixture SPRT, ``error_tau``), the mean latency (mixture SPRT,
    ``latency_tau_ms``) and the cost per play (fixed horizon: reported, not decided on). None
    for the per-request analysis or without data on both sides."""
    if policy.analysis != "user_sequential":
        return None, None, None
    confidence = 1 - 2 * policy.alpha
    errors = latency = cost = None
    if champion.error_users and challenger.error_users:
        errors = user_level_diff(champion.per_user_errors(), challenger.per_user_errors(),
                                 confidence, sequential=True, tau=policy.error_tau)
    if champion.latency_users and challenger.latency_users:
        latency = user_level_diff(champion.per_user_latency(), challenger.per_user_latency(),
                                  confidence, sequential=True, tau=policy.latency_tau_ms)
    if len(champion.cost_users) > 1 and len(challenger.cost_users) > 1:
        cost = user_level_diff(champion.per_user_cost(), challenger.per_user_cost(), 0.95,
                               sequential=False)
    return errors, latency, cost


def watch_through_diff(policy: Policy, champion: VariantMetrics, challenger: VariantMetrics,
                       pre_period: Mapping[int, float] | None = None,
                       ) -> ProportionDiff | RatioDiff:
    """Challenger - champion watch-through since the canary started, with an interval at
    ``1 - 2 alpha`` (each side ``alpha``). ``user_sequential``: per-user counts, the delta
    method and the mixture SPRT's confidence sequence (valid at every window at once), with
    CUPED on each user's pre-period watch-through when ``pre_period`` has any (users without
    one get the pre-period's mean: no adjustment); ``per_request_fixed``: the old per-request
    z interval."""
    confidence = 1 - 2 * policy.alpha
    if policy.analysis == "per_request_fixed" or not (champion.users and challenger.users):
        return two_proportion_test(champion.watched, champion.matured, challenger.watched,
                                   challenger.matured, confidence=confidence)
    covariates = None
    if policy.cuped and pre_period:
        mean = sum(pre_period.values()) / len(pre_period)
        covariates = tuple([pre_period.get(u, mean) for u in m.users]
                           for m in (champion, challenger))
    return user_level_diff(champion.per_user(), challenger.per_user(), confidence,
                           sequential=True, tau=policy.tau, covariates=covariates)


def pre_period_watch_through(lines: list[bytes], join_window_s: float,
                             min_watch_minutes: int) -> dict[int, float]:
    """Each user's watch-through over the recommendation requests in ``lines`` (telemetry
    from before the canary): CUPED's covariate."""
    requests, watches = requests_and_watches(lines)
    per_user = per_user_watch_counts(requests, watches, join_window_s, min_watch_minutes)
    return {u: w / n for u, (w, n) in per_user.items()}


def decide(
    policy: Policy, window: Mapping[str, VariantMetrics], cumulative: Mapping[str, VariantMetrics],
    champion: str, challenger: str, step_index: int, windows_in_step: int,
    pre_period: Mapping[int, float] | None = None, p99_over_before: int = 0,
) -> Decision:
    """What to do after one analysis window.

    Guardrails: errors over everything since the canary started, users as the unit, with the
    always-valid interval (``user_sequential``): significantly more errors, by more than
    ``max_error_rate_delta``, rolls back (the per-request analysis compares the window's error
    rates); the window's p99 latency may exceed the champion's by at most ``max_p99_ratio``
    (and ``p99_slack_ms``): over it in ``p99_windows`` windows in a row (``p99_over_before``
    of them before this one) rolls back, fewer holds the step. Watch-through uses everything
    since the canary
    started (sticky users: more power): significantly worse (upper CI bound < 0) rolls back.
    An early step up needs no sign of harm (the estimate above ``-max_watch_through_drop``);
    the last gate (to 100 %) needs non-inferiority, the CI lower bound above
    ``-max_watch_through_drop`` (every step with ``non_inferiority="every_step"``), and a
    significant lift when ``require_significant_lift``. With the sequential analysis the
    interval is valid at every look, so deciding after every window keeps its error rate.
    """
    empty = VariantMetrics("")
    wc, wn = window.get(champion, empty), window.get(challenger, empty)
    cc, cn = cumulative.get(champion, empty), cumulative.get(challenger, empty)
    reasons: list[str] = []

    errors, latency, cost = guardrail_diffs(policy, cc, cn)

    tail = ""  # the window's p99 over the limit, not yet in enough windows in a row

    def decision(action: str, why: list[str]) -> Decision:
        return Decision(action, why, lift, errors, latency, cost, bool(tail))

    if errors is not None:
        # users as the unit, valid at every look: significantly more errors (interval above
        # zero), by more than the tolerated delta, with at least 3 failed requests
        if cn.errors >= 3 and errors.ci_low > 0 and errors.diff > policy.max_error_rate_delta:
            reasons.append(f"error rate {errors.treatment_rate:.3f} vs champion "
                           f"{errors.control_rate:.3f} (diff CI [{errors.ci_low:+.3f}, "
                           f"{errors.ci_high:+.3f}])")
    elif (wn.requests and wn.errors >= 3
          and wn.error_rate - wc.error_rate > policy.max_error_rate_delta):
        reasons.append(f"error rate {wn.error_rate:.3f} vs champion {wc.error_rate:.3f}")
    if latency is not None and latency.ci_low > policy.max_mean_latency_delta_ms:
        reasons.append(f"mean latency {latency.treatment_rate:.0f} ms vs champion "
                       f"{latency.control_rate:.0f} ms (diff CI [{latency.ci_low:+.0f}, "
                       f"{latency.ci_high:+.0f}] ms)")
    enough = max(policy.min_requests, policy.p99_min_requests)
    if wn.requests >= enough and wc.requests >= enough:
        limit = max(wc.p99_ms * policy.max_p99_ratio, wc.p99_ms + policy.p99_slack_ms)
        if wn.p99_ms > limit:
            tail = (f"p99 {wn.p99_ms:.0f} ms vs champion {wc.p99_ms:.0f} ms (limit {limit:.0f};"
                    f" {p99_over_before + 1} of {policy.p99_windows} windows in a row)")
            if p99_over_before + 1 >= policy.p99_windows:
                reasons.append(tail)

    lift = None
    if cn.matured >= policy.min_requests and cc.matured >= policy.min_requests:
        lift = watch_through_diff(policy, cc, cn, pre_period)
        if lift.ci_high < 0:
            reasons.append(
                f"watch-through {cn.watch_through:.3f} vs champion {cc.watch_through:.3f} "
                f"(diff CI [{lift.ci_low:+.3f}, {lift.ci_high:+.3f}])")
    if reasons:
        return decision(ROLLBACK, reasons)
    if tail:
        return decision(HOLD, [tail])

    if lift is None:
        if windows_in_step + 1 >= policy.max_windows_per_step * 2:
            return decision(ROLLBACK, ["not enough traffic to judge the challenger"])
        return decision(HOLD, [f"waiting for {policy.min_requests} matured requests per variant"
                               f" (champion {cc.matured}, challenger {cn.matured})"])

    last_gate = step_index + 1 >= len(policy.steps) - 1
    if last_gate and policy.require_significant_lift and not lift.ci_low > policy.min_lift:
        if windows_in_step + 1 >= policy.max_windows_per_step:
            return decision(ROLLBACK, [f"no significant lift (diff CI [{lift.ci_low:+.3f}, "
                                       f"{lift.ci_high:+.3f}])"])
        return decision(HOLD, ["lift not yet significant"])
    verdict = f"watch-through diff {lift.diff:+.3f} CI [{lift.ci_low:+.3f}, {lift.ci_high:+.3f}]"
    proof_needed = last_gate or policy.non_inferiority == "every_step"
    if not proof_needed and lift.diff < -policy.max_watch_through_drop:
        # an early step: no harm shown, but the estimate is worse than the margin: more data
        if windows_in_step + 1 >= policy.max_windows_per_step:
            return decision(ROLLBACK, [f"estimate below the margin: {verdict}"])
        return decision(HOLD, [f"estimate below the margin: {verdict}"])
    if proof_needed and lift.ci_low < -policy.max_watch_through_drop:
        # not shown worse, not shown non-inferior either: more data before more traffic
        if windows_in_step + 1 >= policy.max_windows_per_step:
            return decision(ROLLBACK, [f"not shown non-inferior: {verdict}"])
        return decision(HOLD, [f"not yet non-inferior: {verdict}"])
    return decision(PROMOTE if last_gate else STEP, [verdict])


# --- the world ------------------------------------------------------------------------------
class TrafficDriver(Protocol):
    def set_weight(self, challenger_percent: int) -> datetime | None:
        """Apply the share; the (naive UTC) instant it takes effect for new requests, or None
        when it takes effect at once."""
        ...


class RouterDriver:
    """Locally: the router's ``POST /admin/weights``."""

    def __init__(self, router_url: str, champion: str, challenger: str,
                 challenger_urls: Sequence[str] = (), timeout_s: float = 5.0) -> None:
        self.url = router_url.rstrip("/") + "/admin/weights"
        self.champion, self.challenger = champion, challenger
        self.challenger_urls = list(challenger_urls)
        self.timeout_s = timeout_s

    def set_weight(self, challenger_percent: int) -> None:
        body: dict[str, Any] = {"weights": {self.champion: 100 - challenger_percent,
                                            self.challenger: challenger_percent},
                                "source": "canary"}
        if self.challenger_urls:
            body["urls"] = {self.challenger: self.challenger_urls}
        resp = httpx.post(self.url, json=body, timeout=self.timeout_s)
        resp.raise_for_status()


class KServePatchDriver:
    """On Kubernetes: the InferenceService merge patch for the canary's share, validated
    against the KServe v0.20 CRD (merged into ``base``) and written as a file per step; a
    ``kubectl patch --type merge -p @file`` (or the operator's client) applies it."""

    def __init__(self, base_isvc: Mapping[str, Any], mode: str, canary_predictor: Mapping[str, Any],
                 out_dir: Path | str) -> None:
        self.base, self.mode = dict(base_isvc), mode
        self.canary_predictor = dict(canary_predictor)
        self.out_dir = Path(out_dir)
        self.patches: list[Path] = []

    def render(self, challenger_percent: int) -> dict[str, Any]:
        patch = k8s.kserve_canary_patch(self.mode, challenger_percent, self.canary_predictor)
        k8s.validate_isvc(k8s.merge_patch(self.base, patch))
        return patch

    def set_weight(self, challenger_percent: int) -> None:
        patch = self.render(challenger_percent)
        name = f"{len(self.patches):02d}-canary-{challenger_percent}"
        self.patches.append(k8s.write_patch(self.out_dir, name, patch))


class RouterConfigMapDriver:
    """On a cluster without a mesh: the weights ConfigMap every router replica follows
    (experiments.weights_source). A change takes effect at the next whole minute at least
    ``min_delay_s`` ahead: with the simulated service running on the wall clock, a minute's
    requests then all fall on one side of it, so recomputing each user's variant from the
    weights history attributes every request to the variant that served it. Before the
    challenger gets traffic, its model server must be ready (``ready``)."""

    def __init__(self, api: Any, configmap: str, champion_variant: str, challenger_variant: str,
                 ready: Callable[[], bool] | None = None, ready_timeout_s: float = 600.0,
                 min_delay_s: float = 5.0, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.api, self.configmap = api, configmap
        self.champion_variant, self.challenger_variant = champion_variant, challenger_variant
        self.ready, self.ready_timeout_s = ready, ready_timeout_s
        self.min_delay_s, self.sleep, self.now = min_delay_s, sleep, now

    def effective_instant(self) -> datetime:
        earliest = self.now() + timedelta(seconds=self.min_delay_s)
        minute = earliest.replace(second=0, microsecond=0)
        return minute if minute >= earliest else minute + timedelta(minutes=1)

    def set_weight(self, challenger_percent: int) -> datetime:
        from experiments.weights_source import KEY

        if challenger_percent > 0 and self.ready is not None:
            waited = 0.0
            while not self.ready():
                if waited >= self.ready_timeout_s:
                    raise RuntimeError(f"the challenger's model server is not ready after "
                                       f"{self.ready_timeout_s:.0f} s")
                self.sleep(2.0)
                waited += 2.0
        at = self.effective_instant()
        payload = json.dumps({
            "weights": {self.champion_variant: float(100 - challenger_percent),
                        self.challenger_variant: float(challenger_percent)},
            "source": "canary", "effective_at": at.isoformat().replace("+00:00", "Z")},
            sort_keys=True)
        self.api.patch_configmap(self.configmap, {KEY: payload})
        return at.replace(tzinfo=None)


class CompositeDriver:
    """Several drivers for one share: the InferenceService patch (which deploys or removes the
    challenger's predictor) and the router's weights. Traffic moves to the challenger only
    after its predictor is asked for, and away from it before it is removed."""

    def __init__(self, deploy: TrafficDriver, route: TrafficDriver,
                 sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC).replace(tzinfo=None),
                 margin_s: float = 3.0) -> None:
        self.deploy, self.route = deploy, route
        self.sleep, self.now, self.margin_s = sleep, now, margin_s

    def set_weight(self, challenger_percent: int) -> datetime | None:
        if challenger_percent > 0:
            self.deploy.set_weight(challenger_percent)
            return self.route.set_weight(challenger_percent)
        at = self.route.set_weight(challenger_percent)
        self.wait_until(at)  # no router sends to the challenger any more
        self.deploy.set_weight(challenger_percent)
        return at

    def wait_until(self, at: datetime | None) -> None:
        if at is not None:
            self.sleep(max(0.0, (at - self.now()).total_seconds() + self.margin_s))


class MovieCosts:
    """License cost per play from the metadata API (bulk ``GET /movie/a,b,...``), cached; an
    outage or a bad record leaves the cost unknown, never stops the controller."""

    def __init__(self, url: str, timeout_s: float = 2.0, bulk: int = 200) -> None:
        self.url, self.timeout_s, self.bulk = url.rstrip("/"), timeout_s, bulk
        self.costs: dict[str, float] = {}
        self._tried: set[str] = set()

    def fetch(self, movie_ids: Iterable[str]) -> dict[str, float]:
        todo = sorted(set(movie_ids) - self._tried)
        for i in range(0, len(todo), self.bulk):
            chunk = todo[i:i + self.bulk]
            self._tried.update(chunk)
            try:
                resp = httpx.get(f"{self.url}/movie/{','.join(chunk)}", timeout=self.timeout_s)
                records = resp.json() if resp.status_code == 200 else []
            except (httpx.HTTPError, ValueError):
                continue
            for rec in records if isinstance(records, list) else [records]:
                try:
                    self.costs[str(rec["id"])] = float(rec["cost"])
                except (KeyError, TypeError, ValueError):
                    pass
        return self.costs


class Telemetry(Protocol):
    def poll(self) -> list[bytes]: ...


class LinesFileTelemetry:
    """Tails a file of EVENTS.md lines (what the simulator's file sink writes)."""

    def __init__(self, path: Path | str, from_end: bool = True) -> None:
        self.path = Path(path)
        self.offset = self.path.stat().st_size if from_end and self.path.exists() else 0

    def history(self, max_lines: int) -> list[bytes]:
        """The last ``max_lines`` complete lines before the current position."""
        if not self.path.exists() or not self.offset:
            return []
        start = max(0, self.offset - max_lines * 400)  # telemetry lines are far shorter
        with open(self.path, "rb") as fh:
            fh.seek(start)
            lines = fh.read(self.offset - start).splitlines()
        if start > 0:
            lines = lines[1:]  # the first may be cut
        return lines[-max_lines:]

    def poll(self) -> list[bytes]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a partly written last line waits for the next poll
        self.offset += end
        return data[:end].splitlines()


class KafkaTelemetry:
    """Reads the telemetry topic from its current end.

    Partitions are assigned by hand, with no consumer group: a reader of "everything from now
    on" needs no coordination, and a previous controller that did not close its consumer can
    never hold the partitions away from the next one."""

    def __init__(self, bootstrap: str, topic: str, wait_s: float = 30.0,
                 security: dict | None = None) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      consumer_timeout_ms=200, **(security or {}))
        deadline = time.monotonic() + wait_s
        parts = self.consumer.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = self.consumer.partitions_for_topic(topic)
        if not parts:
            self.consumer.close()
            raise RuntimeError(f"telemetry topic {topic!r} has no partitions on {bootstrap} "
                               f"after {wait_s:.0f}s")
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        self.consumer.seek_to_end()

    def poll(self, max_s: float = 1.0) -> list[bytes]:
        """What arrived since the last call, reading for at most ``max_s`` seconds."""
        lines: list[bytes] = []
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            batch = self.consumer.poll(timeout_ms=100, max_records=20_000)
            if not batch:
                break
            for records in batch.values():
                lines.extend(r.value for r in records)
        return lines

    def history(self, max_lines: int, max_s: float = 60.0) -> list[bytes]:
        """The last ``max_lines`` records before the current end (spread over the partitions),
        read by seeking back; afterwards the position is that end again."""
        parts = sorted(self.consumer.assignment(), key=lambda tp: tp.partition)
        if not parts or max_lines <= 0:
            return []
        ends = self.consumer.end_offsets(parts)
        begins = self.consumer.beginning_offsets(parts)
        per = max(1, max_lines // len(parts))
        for tp in parts:
            self.consumer.seek(tp, max(begins[tp], ends[tp] - per))
        lines: list[bytes] = []
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline and any(
                self.consumer.position(tp) < ends[tp] for tp in parts):
            batch = self.consumer.poll(timeout_ms=200, max_records=50_000)
            for tp, records in batch.items():
                lines.extend(r.value for r in records if r.offset < ends[tp])
        for tp in parts:
            self.consumer.seek(tp, ends[tp])
        return lines

    def drain(self, max_s: float = 30.0) -> list[bytes]:
        """Everything up to the topic's end as of now (before a weight change)."""
        parts = self.consumer.assignment()
        ends = self.consumer.end_offsets(list(parts)) if parts else {}
        lines: list[bytes] = []
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            if all(self.consumer.position(tp) >= end for tp, end in ends.items()):
                break
            lines += self.poll(1.0)
        return lines

    def close(self) -> None:
        self.consumer.close()


@dataclass
class WindowRecord:
    index: int
    time: str
    event_time: str
    challenger_percent: int
    step_index: int
    window: dict[str, dict]
    cumulative: dict[str, dict]
    srm_p_value: float
    decision: str
    reasons: list[str]
    lift: dict | None
    errors: dict | None = None  # the error guardrail's user-level difference
    latency: dict | None = None  # mean latency, user-level (ms)
    cost: dict | None = None  # cost per play, user-level (reported)


@dataclass
class CanaryResult:
    experiment: str
    champion: str
    challenger: str
    outcome: str = "running"  # promoted | rolled_back | running
    final_percent: int = 0
    windows: list[WindowRecord] = field(default_factory=list)
    weights_history: list[dict] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    policy: dict = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return _finite(asdict(self))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


class CanaryController:
    def __init__(
        self, experiment: str, policy: Policy, driver: TrafficDriver, telemetry: Telemetry, *,
        champion: str = "champion", challenger: str = "challenger", join_window_s: float = 1800.0,
        promote: Callable[[], Any] | None = None, metrics: ExperimentMetrics | None = None,
        sleep: Callable[[float], None] | None = None, clock: Callable[[], float] | None = None,
        window_s: float = 60.0,
        costs: MovieCosts | None = None, state_path: Path | str | None = None,
        max_windows: int = 50, min_watch_minutes: int = 15,
        publish: Callable[[], Any] | None = None, history_clock: str = "telemetry",
        pre_period_lines: int = 0, pseudonyms: Any = None,
    ) -> None:
        """``publish``: called whenever the state changes (start, every window, the end); the
        entry point pushes the metrics to a Pushgateway with it."""
        self.experiment, self.policy, self.driver, self.telemetry = experiment, policy, driver, telemetry
        self.champion, self.challenger = champion, challenger
        self.join_window_s = join_window_s
        self.promote_fn = promote
        self.metrics = metrics or ExperimentMetrics()
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self.window_s = window_s
        self.costs = costs
        self.state_path = Path(state_path) if state_path else None
        self.max_windows = max_windows
        self.min_watch_minutes = min_watch_minutes
        self.publish = publish
        self.pre_period_lines = pre_period_lines
        self.pre_period: dict[int, float] = {}
        if history_clock not in ("telemetry", "effective"):
            raise ValueError(f"history_clock must be telemetry or effective, not {history_clock!r}")
        # telemetry: a weight change applies after the newest request seen (simulated clocks);
        # effective: at the instant the driver says it takes effect (wall-clock telemetry)
        self.history_clock = history_clock
        # the telemetry names users by id; the router assigns by pseudonym when configured
        self.history = WeightsHistory(
            experiment, unit=pseudonyms.pid if pseudonyms is not None else None)
        self.requests: list[RecommendationRequest] = []
        self.watches: list[WatchMinute] = []
        self._shown: set[tuple[int, str]] = set()
        self.watermark = datetime.min  # newest event time seen
        self.request_watermark = datetime.min  # newest recommendation request seen
        self.result = CanaryResult(experiment, champion, challenger,
                                   policy=_finite(asdict(policy)))

    # telemetry -----------------------------------------------------------------------------
    def _ingest(self, lines: Iterable[bytes]) -> list[RecommendationRequest]:
        """Parse new lines; keep every recommendation request, and only the watch minutes of
        movies that were recommended to that user before (all the join can use: ~98 % of the
        lines are watch minutes, most of them organic)."""
        batch = parse_lines(lines if isinstance(lines, list) else list(lines))
        new = []
        # the project's batch parser (equal to parse() line by line); recommendation requests
        # first, then the watch minutes of movies shown to that user (the join keeps only those
        # after the request, by time)
        watches: list[WatchMinute] = []
        for _i, ev in batch.others:
            if isinstance(ev, RecommendationRequest):
                self.requests.append(ev)
                new.append(ev)
                self.request_watermark = max(self.request_watermark, ev.time)
                self.watermark = max(self.watermark, ev.time)
                for movie in ev.movie_ids:
                    self._shown.add((ev.user_id, movie))
            elif isinstance(ev, WatchMinute):
                watches.append(ev)
        table = batch.watch
        if table.num_rows:
            shown = self._shown
            keep = [(u, m) in shown for u, m in zip(table.column("user_id").to_pylist(),
                                                    table.column("movie_id").to_pylist(),
                                                    strict=True)]
            if any(keep):
                kept = table.filter(pa.array(keep))
                watches += [WatchMinute(t, u, m, k) for t, u, m, k in zip(
                    kept.column("time").to_pylist(), kept.column("user_id").to_pylist(),
                    kept.column("movie_id").to_pylist(), kept.column("minute").to_pylist(),
                    strict=True)]
        for ev in watches:
            self.watermark = max(self.watermark, ev.time)
            if (ev.user_id, ev.movie_id) in self._shown:
                self.watches.append(ev)
        return new

    def _set_percent(self, pct: int) -> None:
        # drain first: the change applies to requests after the newest one seen so far
        drain = getattr(self.telemetry, "drain", self.telemetry.poll)
        self._ingest(drain())
        effective = self.driver.set_weight(pct)
        if not self.history.changes:
            since = datetime.min
        elif effective is not None and self.history_clock == "effective":
            # the telemetry runs on the wall clock: the change applies from its instant on
            since = effective - timedelta(microseconds=1)
        else:
            since = self.request_watermark
        weights = [(self.champion, 100 - pct), (self.challenger, pct)]
        self.history.add(since, weights)
        self.result.final_percent = pct
        for name, w in weights:
            self.metrics.weight.labels(self.experiment, name).set(w)
        log.info("%s: challenger %s at %d %%", self.experiment, self.challenger, pct)

    # the loop ------------------------------------------------------------------------------
    def run(self) -> CanaryResult:
        self.result.started_at = _now()
        history = getattr(self.telemetry, "history", None)
        if self.policy.cuped and self.pre_period_lines and history is not None:
            lines = history(self.pre_period_lines)
            self.pre_period = pre_period_watch_through(lines, self.join_window_s,
                                                       self.min_watch_minutes)
            log.info("pre-period: %d lines, watch-through of %d users (CUPED covariate)",
                     len(lines), len(self.pre_period))
        self.telemetry.poll()  # what happened before the canary is not its evidence
        step_index, windows_in_step, p99_over = 0, 0, 0
        self._set_percent(self.policy.steps[0])
        self._save()
        start_watermark = self.request_watermark
        for index in range(self.max_windows):
            # read while the window runs: the telemetry is never a window behind
            end, n_lines, window_requests = self.clock() + self.window_s, 0, []
            while True:
                lines = self.telemetry.poll()
                n_lines += len(lines)
                window_requests += [r for r in self._ingest(lines) if r.time > start_watermark]
                remaining = end - self.clock()
                if remaining <= 0:
                    break
                self.sleep(min(1.0, remaining))
            log.info("window %d: %d lines", index, n_lines)
            pct = self.result.final_percent
            window_out = outcomes(window_requests, (), self.history, self.join_window_s)
            all_requests = [r for r in self.requests if r.time > start_watermark]
            costs = self.costs.fetch({w.movie_id for w in self.watches}) if self.costs else None
            all_out = outcomes(all_requests, self.watches, self.history, self.join_window_s,
                               costs, self.min_watch_minutes)
            matured = _minus_seconds(self.watermark, self.join_window_s)
            variants = (self.champion, self.challenger)
            window = aggregate(window_out, None, variants)
            cumulative = aggregate(all_out, matured, variants)
            for v, m in cumulative.items():
                if m.matured:
                    self.metrics.watch_through.labels(self.experiment, v).set(m.watch_through)
            srm = self._srm(window_out)
            decision = decide(self.policy, window, cumulative, self.champion, self.challenger,
                              step_index, windows_in_step, self.pre_period, p99_over)
            p99_over = p99_over + 1 if decision.p99_over else 0
            self.result.windows.append(WindowRecord(
                index, _now(), self.watermark.isoformat(), pct, step_index,
                {v: m.summary() for v, m in window.items()},
                {v: m.summary() for v, m in cumulative.items()},
                srm, decision.action, decision.reasons,
                asdict(decision.lift) if decision.lift else None,
                asdict(decision.errors) if decision.errors else None,
                asdict(decision.latency) if decision.latency else None,
                asdict(decision.cost) if decision.cost else None,
            ))
            log.info("window %d at %d %%: %s %s", index, pct, decision.action, decision.reasons)
            windows_in_step += 1
            if decision.action == ROLLBACK:
                self._set_percent(0)
                self.metrics.rollbacks.inc()
                self.result.outcome = "rolled_back"
                break
            if decision.action == PROMOTE:
                self._set_percent(100)
                if self.promote_fn is not None:
                    self.promote_fn()
                self.metrics.promotions.inc()
                self.result.outcome = "promoted"
                break
            if decision.action == STEP:
                step_index += 1
                windows_in_step = 0
                self._set_percent(self.policy.steps[step_index])
            self._save()
        self.result.finished_at = _now()
        self.result.weights_history = self.history.to_json()
        self._save()
        return self.result

    def _srm(self, window_out: Sequence[Outcome]) -> float:
        """SRM p-value of the window's per-variant request counts against the weights (counted
        by distinct users: requests per user vary, users are what is randomised)."""
        users: dict[str, set[int]] = {self.champion: set(), self.challenger: set()}
        for o in window_out:
            users.setdefault(o.variant, set()).add(o.request.user_id)
        pct = self.result.final_percent
        counts = {v: len(u) for v, u in users.items()}
        if sum(counts.values()) == 0 or pct in (0, 100):
            return math.nan
        return srm_test(counts, {self.champion: 100 - pct, self.challenger: pct}).p_value

    def _save(self) -> None:
        if self.publish is not None:
            self.publish()
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result.to_json(), indent=1))
        tmp.replace(self.state_path)


def _minus_seconds(t: datetime, seconds: float) -> datetime:
    from datetime import timedelta

    try:
        return t - timedelta(seconds=seconds)
    except OverflowError:
        return datetime.min
