from __future__ import annotations

import numpy as np

from movierec_core.events import AccountCreation, WatchMinute, parse
from simulator.stream import iter_batches, simulation_config


def test_scheduled_drift_shifts_tastes_adds_releases_and_moves_signups(tiny_world):
    cfg = simulation_config(seed=4, **{"drift.at_minute": 30, "drift.new_releases": 50,
                                       "behaviour.signups_per_hour": 120})
    batches, sim = iter_batches(tiny_world, cfg=cfg)
    before_taste = sim.world.user_taste[: sim.world.n_users].copy()
    n_movies = sim.world.n_movies
    lines = [line for _, batch in zip(range(120), batches, strict=False) for line in batch]
    (record,) = sim.ledger.drift
    assert record["minute"] == 30 and record["kinds"] == ["taste_shift", "new_releases",
                                                          "signup_shift"]
    assert sim.world.n_movies == n_movies + 50
    new_ids = sim.world.movie_ids[n_movies:]
    assert all(m.endswith("+2025") for m in new_ids)
    moved = np.linalg.norm(sim.world.user_taste[: len(before_taste)] - before_taste, axis=1) > 1e-6
    assert 0.15 < moved.mean() < 0.45
    events = [parse(line) for line in lines]
    watched_new = {e.movie_id for e in events if isinstance(e, WatchMinute)} & set(new_ids)
    assert watched_new  # the burst is popular
    signup_minute = {e.user_id: (e.time - sim.start).total_seconds() // 60 for e in events
                     if isinstance(e, AccountCreation)}
    ages = sim.world.age
    early = [ages[u] for u, m in signup_minute.items() if m < 30]
    late = [ages[u] for u, m in signup_minute.items() if m >= 30]
    assert np.mean(late) < np.mean(early) - 5
    assert len(late) / 90 > 1.5 * len(early) / 30  # sign-up rate went up
