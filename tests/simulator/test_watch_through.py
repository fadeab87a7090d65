from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from movierec_core.events import RecommendationRequest, WatchMinute
from movierec_core.watch_through import frames_from_events, request_outcomes, watch_through

T0 = datetime(2025, 3, 2, 12, 0, 0)


def _request(user, minute, ids, status=200, server="s"):
    return RecommendationRequest(T0 + timedelta(minutes=minute), user, server, status,
                                 tuple(ids) if status == 200 else (), "" if status == 200 else "x", 9)


def _watch(user, movie, start_minute, n):
    return [WatchMinute(T0 + timedelta(minutes=start_minute + i, seconds=5), user, movie, i)
            for i in range(n)]


def test_watch_through_known_answer():
    events = [
        _request(1, 0, ["a+1", "b+2"]),        # watched b for 20 min right after: through
        *_watch(1, "b+2", 1, 20),
        _request(2, 0, ["a+1"]),               # watched a only 5 min: not through
        *_watch(2, "a+1", 1, 5),
        _request(3, 0, ["a+1"], server="t"),   # watched an unlisted movie: not through
        *_watch(3, "c+3", 1, 30),
        _request(4, 0, ["a+1"], server="t"),   # watched it, but after the window: not through
        *_watch(4, "a+1", 200, 30),
        _request(5, 0, [], status=0),          # failed: not in the denominator
        _request(6, 10, ["d+4"], server="t"),  # watched before the request only: not through
        *_watch(6, "d+4", 0, 9),
        *_watch(6, "d+4", 10, 15),             # ...and 15 minutes after: through (>= 15)
    ]
    requests, watches = frames_from_events(events)
    assert watch_through(requests, watches, min_minutes=15, window_minutes=120) == 2 / 5
    outcomes = request_outcomes(requests, watches, 15, 120)
    assert outcomes["best_minutes"].tolist() == [20, 5, 0, 0, 15]
    by = watch_through(requests, watches, 15, 120, by="server")
    assert by.loc["s", "requests"] == 2 and by.loc["s", "watch_through"] == 0.5
    assert by.loc["t", "requests"] == 3 and abs(by.loc["t", "watch_through"] - 1 / 3) < 1e-12


def test_empty_inputs():
    requests, watches = frames_from_events([])
    assert pd.isna(watch_through(requests, watches))
    requests, _ = frames_from_events([_request(1, 0, ["a+1"])])
    assert watch_through(requests, watches) == 0.0
