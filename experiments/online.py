"""Online metrics per variant from telemetry alone.

Inputs are the telemetry lines (EVENTS.md) — recommendation requests (what was shown, to whom,
when, status, latency) and watch minutes — plus the experiment's weights history. The
variant of a request is recovered, not logged: assignment is a pure function of (experiment,
user, weights in force at the request's time), so :class:`WeightsHistory` replays it. The
router's own request log (``requests.jsonl``) is a cross-check, not an input.

The join of recommendations with later watches is ``movierec_core.watch_through`` (one
definition of watch-through for the simulator's checks and for experiments); this module
attributes its per-request outcomes to variants and groups them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from experiments.assignment import Allocation
from experiments.stats import percentile
from movierec_core import watch_through
from movierec_core.events import RecommendationRequest, WatchMinute


@dataclass
class WeightsHistory:
    """Allocations in force from given event times on (the first applies to everything before)."""

    experiment: str
    changes: list[tuple[datetime, Allocation]] = field(default_factory=list)
    # the router's assignment unit (:class:`experiments.router.ExperimentState`): a user's
    # pseudonym with pseudonymous ids, else the id
    unit: Callable[[int], int] | None = field(default=None, repr=False)

    def add(self, since: datetime, weights: Mapping[str, float] | Sequence[tuple[str, float]]) -> None:
        alloc = Allocation.from_weights(weights)
        i = bisect.bisect_right([t for t, _ in self.changes], since)
        self.changes.insert(i, (since, alloc))

    def allocation_at(self, when: datetime) -> Allocation:
        if not self.changes:
            raise ValueError("empty weights history")
        i = bisect.bisect_left([t for t, _ in self.changes], when) - 1  # changes apply after t
        return self.changes[max(i, 0)][1]

    def variant_of(self, user_id: int, when: datetime) -> str:
        unit = self.unit(user_id) if self.unit is not None else user_id
        return self.allocation_at(when).variant_of(self.experiment, unit)

    def to_json(self) -> list[dict]:
        return [{"since": t.isoformat(), "weights": [[v, len(r) / 100] for v, r in a.ranges().items()]}
                for t, a in self.changes]


@dataclass
class Outcome:
    """One recommendation request and what followed it."""

    request: RecommendationRequest
    variant: str
    watched: bool = False  # watched through (movierec_core.watch_through)
    minutes: int = 0  # minutes of the best listed movie within the window
    plays: int = 0  # 1 when watched through
    cost: float | None = None  # license cost of the play (None: unknown)


@dataclass
class VariantMetrics:
    variant: str
    requests: int = 0
    errors: int = 0
    matured: int = 0  # successful requests old enough for their watch window to be complete
    watched: int = 0
    minutes: int = 0
    plays: int = 0
    cost: float = 0.0
    costed_plays: int = 0  # plays whose license cost is known
    latencies_ms: list[float] = field(default_factory=list)
    # matured requests per user: user id -> [watched, matured] (the unit of analysis)
    users: dict[int, list[int]] = field(default_factory=dict)
    # every request per user: user id -> [errors, requests] (the error guardrail's unit)
    error_users: dict[int, list[int]] = field(default_factory=dict)
    # every request per user: user id -> [sum of response ms, requests] (mean latency)
    latency_users: dict[int, list[float]] = field(default_factory=dict)
    # costed plays per user: user id -> [sum of license costs, plays] (cost per play)
    cost_users: dict[int, list[float]] = field(default_factory=dict)

    def per_user(self) -> tuple[list[int], list[int]]:
        """(watched per user, matured requests per user), users in any fixed order."""
        return _columns(self.users)

    def per_user_errors(self) -> tuple[list[int], list[int]]:
        """(failed requests per user, requests per user)."""
        return _columns(self.error_users)

    def per_user_latency(self) -> tuple[list[float], list[float]]:
        """(summed response ms per user, requests per user)."""
        return _columns(self.latency_users)

    def per_user_cost(self) -> tuple[list[float], list[float]]:
        """(summed license cost per user, costed plays per user)."""
        return _columns(self.cost_users)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def watch_through(self) -> float:
        return self.watched / self.matured if self.matured else math.nan

    @property
    def minutes_per_request(self) -> float:
        return self.minutes / self.matured if self.matured else math.nan

    @property
    def cost_per_play(self) -> float:
        return self.cost / self.costed_plays if self.costed_plays else math.nan

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    def summary(self) -> dict[str, float | int | str]:
        return {
            "variant": self.variant, "requests": self.requests, "errors": self.errors,
            "error_rate": self.error_rate, "matured": self.matured, "watched": self.watched,
            "watch_through": self.watch_through, "minutes_per_request": self.minutes_per_request,
            "plays": self.plays, "cost_per_play": self.cost_per_play,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "users": len(self.users),
        }


def _count(per_user: dict[int, list], user: int, value: float) -> None:
    """Add ``value`` and one observation to the user's ``[sum, count]``."""
    acc = per_user.get(user)
    if acc is None:
        per_user[user] = [value, 1]
    else:
        acc[0] += value
        acc[1] += 1


def _columns(per_user: dict[int, list]) -> tuple[list, list]:
    values = list(per_user.values())
    return [v[0] for v in values], [v[1] for v in values]


def join_watches(
    requests: Sequence[RecommendationRequest], watches: Iterable[WatchMinute], window_s: float,
    costs: Mapping[str, float] | None = None, min_minutes: int = watch_through.DEFAULT_MIN_MINUTES,
) -> list[tuple[bool, int, int, float | None]]:
    """Per request: (watched through, minutes of the best listed movie in the window, plays,
    license cost of the play, None when unknown). The join and its definition are ``movierec_core.watch_through``
    (a request is watched through when the user streamed >= ``min_minutes`` minutes of one
    listed movie within the window); failed requests get (False, 0, 0, 0.0). The played movie
    (for its cost) is the first listed movie the user watched in the window."""
    requests = list(requests)
    watches = list(watches)
    req_df, watch_df = watch_through.frames_from_events([*requests, *watches])
    result = watch_through.request_outcomes(req_df, watch_df, min_minutes, window_s / 60)
    watched_flags = result["watched_through"].to_numpy()
    best = result["best_minutes"].to_numpy()
    costs = costs or {}
    watch_times: dict[tuple[int, str], list[datetime]] = {}
    if costs:
        for w in watches:
            watch_times.setdefault((w.user_id, w.movie_id), []).append(w.time)
    window = timedelta(seconds=window_s)
    out: list[tuple[bool, int, int, float]] = []
    row = 0
    for r in requests:
        if r.status != 200:
            out.append((False, 0, 0, None))
            continue
        watched, minutes = bool(watched_flags[row]), int(best[row])
        row += 1
        cost = None
        if watched and costs:
            for movie in r.movie_ids:
                if any(r.time <= t <= r.time + window for t in watch_times.get((r.user_id, movie), ())):
                    cost = costs.get(movie)
                    break
        out.append((watched, minutes, int(watched), cost))
    return out


def requests_and_watches(lines: Sequence[bytes],
                         ) -> tuple[list[RecommendationRequest], list[WatchMinute]]:
    """The successful recommendation requests and the watch minutes of raw telemetry lines
    (the platform's batch parser; invalid lines are skipped)."""
    from movierec_core.batch import parse_lines

    batch = parse_lines(lines)
    requests = [e for _, e in batch.others
                if isinstance(e, RecommendationRequest) and e.status == 200]
    watches = [e for _, e in batch.others if isinstance(e, WatchMinute)]
    watches += [e for _, e in batch.watch_events()]
    return requests, watches


def per_user_watch_counts(requests: Sequence[RecommendationRequest],
                          watches: Iterable[WatchMinute], window_s: float,
                          min_minutes: int) -> dict[int, list[int]]:
    """user id -> [requests watched through, requests], by the platform's join."""
    per_user: dict[int, list[int]] = {}
    if not requests:
        return per_user
    joined = join_watches(requests, watches, window_s, None, min_minutes)
    for r, (watched, _m, _p, _c) in zip(requests, joined, strict=True):
        _count(per_user, r.user_id, int(watched))
    return per_user


def outcomes(
    requests: Sequence[RecommendationRequest], watches: Iterable[WatchMinute],
    history: WeightsHistory, window_s: float, costs: Mapping[str, float] | None = None,
    min_minutes: int = watch_through.DEFAULT_MIN_MINUTES,
) -> list[Outcome]:
    if not requests:
        return []
    joined = join_watches(requests, watches, window_s, costs, min_minutes)
    out = []
    for req, (watched, minutes, plays, cost) in zip(requests, joined, strict=True):
        out.append(Outcome(req, history.variant_of(req.user_id, req.time), watched, minutes,
                           plays, cost))
    return out


def aggregate(
    items: Iterable[Outcome], matured_before: datetime | None = None,
    variants: Sequence[str] = (),
) -> dict[str, VariantMetrics]:
    """Group outcomes by variant. Watch figures count only successful requests made before
    ``matured_before`` (their window is complete); errors and latency count every request."""
    result = {v: VariantMetrics(v) for v in variants}
    for o in items:
        m = result.setdefault(o.variant, VariantMetrics(o.variant))
        m.requests += 1
        m.latencies_ms.append(float(o.request.response_ms))
        failed = o.request.status != 200
        user = o.request.user_id
        _count(m.error_users, user, int(failed))
        _count(m.latency_users, user, float(o.request.response_ms))
        if failed:
            m.errors += 1
            continue
        if matured_before is not None and o.request.time > matured_before:
            continue
        m.matured += 1
        m.watched += int(o.watched)
        _count(m.users, user, int(o.watched))
        m.minutes += o.minutes
        m.plays += o.plays
        if o.cost is not None:
            m.cost += o.cost
            m.costed_plays += 1
            _count(m.cost_users, user, o.cost)
    return result
