from datetime import datetime, timedelta

import pytest

from experiments.assignment import Allocation
from experiments.online import WeightsHistory, aggregate, outcomes
from movierec_core.events import RecommendationRequest, WatchMinute

T0 = datetime(2026, 11, 1, 12, 0)


def test_weights_history_replays_the_sticky_assignment_at_each_time():
    h = WeightsHistory("exp")
    h.add(datetime.min, {"champion": 95, "challenger": 5})
    h.add(T0, {"champion": 50, "challenger": 50})
    early, late = Allocation.from_weights({"champion": 95, "challenger": 5}), Allocation.from_weights(
        {"champion": 50, "challenger": 50})
    for uid in range(300):
        assert h.variant_of(uid, T0) == early.variant_of("exp", uid)  # a change applies after t
        assert h.variant_of(uid, T0 + timedelta(seconds=1)) == late.variant_of("exp", uid)


def test_per_variant_metrics_from_requests_and_later_watches():
    h = WeightsHistory("exp")
    h.add(datetime.min, {"champion": 50, "challenger": 50})
    alloc = Allocation.from_weights({"champion": 50, "challenger": 50})
    uc = next(u for u in range(100) if alloc.variant_of("exp", u) == "champion")
    un = next(u for u in range(100) if alloc.variant_of("exp", u) == "challenger")
    reqs = [
        RecommendationRequest(T0, uc, "r:8082", 200, ("a+2000", "b+2001"), "", 30),
        RecommendationRequest(T0, un, "r:8082", 200, ("c+2002",), "", 50),
        RecommendationRequest(T0 + timedelta(seconds=5), un, "r:8082", 0, (), "timeout", 600),
        RecommendationRequest(T0 + timedelta(hours=5), uc, "r:8082", 200, ("a+2000",), "", 10),
    ]
    watches = [WatchMinute(T0 + timedelta(minutes=m), uc, "a+2000", m) for m in range(1, 21)]
    watches += [WatchMinute(T0 + timedelta(minutes=m), uc, "b+2001", m) for m in range(1, 5)]
    # the challenger's user watches 20 minutes too, but after the 30-minute window
    watches += [WatchMinute(T0 + timedelta(hours=2, minutes=m), un, "c+2002", m) for m in range(20)]
    outs = outcomes(reqs, watches, h, window_s=1800, costs={"a+2000": 2.5})
    metrics = aggregate(outs, matured_before=T0 + timedelta(hours=1), variants=("champion", "challenger"))
    c, n = metrics["champion"], metrics["challenger"]
    assert (c.requests, c.errors, c.matured, c.watched, c.minutes, c.plays) == (2, 0, 1, 1, 20, 1)
    assert c.watch_through == 1.0 and c.cost_per_play == 2.5
    assert (n.requests, n.errors, n.matured, n.watched) == (2, 1, 1, 0)
    assert n.error_rate == 0.5 and n.watch_through == 0.0
    assert n.p50_ms == pytest.approx(325.0) and c.p99_ms == pytest.approx(29.8)


def test_fewer_minutes_than_the_threshold_is_not_a_watch_through():
    h = WeightsHistory("exp")
    h.add(datetime.min, {"only": 100})
    req = RecommendationRequest(T0, 1, "r:8082", 200, ("a+2000",), "", 30)
    watches = [WatchMinute(T0 + timedelta(minutes=m), 1, "a+2000", m) for m in range(1, 15)]
    (o,) = outcomes([req], watches, h, window_s=7200)
    assert (o.variant, o.watched, o.minutes) == ("only", False, 14)
