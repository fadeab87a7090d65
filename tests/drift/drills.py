"""Simulator drills for the drift detectors: the real simulator (world, behaviour, scheduled
drift), its contract lines parsed by the contract parser, windows as the lake holds them.

One drill seed = a world, a warm-up, a reference window, then three continuations of the same
simulation state: no drift, a taste shift, a demographic shift of sign-ups. The recommender is
the oracle of a *frozen copy* of the world taken before the run: a model fitted on the past,
which goes stale when tastes move (what a taste shift does to a production model).

The drill world is small but busy (500 users, short watches, every pick preceded by a
recommendation request, 240 sign-ups/h) so that 30-minute windows of ~17K lines hold enough
independent units; the drift itself is the simulator's, with the taste shift applied to 60 %
of users (at the default 30 % the effect per 30-minute window is too small for any marginal
test at a 1 % family-wise false-alarm budget: see docs/monitoring.md).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import pandas as pd

from drift.detectors import DriftRun, run_detectors
from drift.window import Catalog, Window
from movierec_core.events import Rejection, parse
from simulator.behaviour import Simulation
from simulator.recommenders import OracleRecommender
from simulator.stream import simulation_config
from simulator.world import GENDERS, OCCUPATIONS, World, WorldConfig

N_USERS = 500
N_MOVIES = 2000
WARM_MINUTES = 60
WINDOW_MINUTES = 30
TASTE_SHIFT_SHARE = 0.6
BEHAVIOUR = {
    "behaviour.watch_mean_factor": 0.5,
    "behaviour.request_prob": 1.0,
    "behaviour.session_rate_per_hour": 2.0,
    "behaviour.signups_per_hour": 240.0,
}
SCENARIOS = ("none", "taste_shift", "signup_shift")


@dataclass
class DrillOutcome:
    seed: int
    scenario: str
    run: DriftRun
    lines: int


def _take(sim: Simulation, minutes: int) -> tuple[Window, int]:
    lines: list[bytes] = []
    for _ in range(minutes):
        lines += sim.step()
    events = [e for e in map(parse, lines) if not isinstance(e, Rejection)]
    return Window.from_events(events), len(lines)


def catalog_of(world: World) -> Catalog:
    """What the ingestor's enrichment would hold: every user's and movie's metadata."""
    n, m = world.n_users, world.n_movies
    users = pd.DataFrame({
        "user_id": range(n), "age": world.age[:n],
        "gender": [GENDERS[g] for g in world.gender[:n]],
        "occupation": [OCCUPATIONS[o] for o in world.occupation[:n]],
    })
    movies = pd.DataFrame({"movie_id": world.movie_ids[:m],
                           "genres": [list(g) for g in world.movie_genres[:m]]})
    return Catalog(users, movies)


def _fork(sim: Simulation) -> Simulation:
    lock, sim.lock = sim.lock, None  # a lock cannot be copied
    try:
        twin = copy.deepcopy(sim)
    finally:
        sim.lock = lock
    twin.lock = threading.Lock()
    return twin


def run_seed(world_seed: int, scenarios=SCENARIOS, **detector_kwargs) -> list[DrillOutcome]:
    """Reference window, then one current window per scenario from the same state."""
    seed = world_seed
    world = World.build(WorldConfig(seed=seed, n_users=N_USERS, n_movies=N_MOVIES))
    cfg = simulation_config(seed, **BEHAVIOUR)
    cfg.drift.taste_shift_share = TASTE_SHIFT_SHARE
    sim = Simulation(world, cfg)
    sim.recommender = OracleRecommender(copy.deepcopy(world), 20, sim.seen_ids)
    for _ in range(WARM_MINUTES):
        sim.step()
    reference, _ = _take(sim, WINDOW_MINUTES)
    outcomes = []
    for scenario in scenarios:
        twin = _fork(sim)
        if scenario != "none":
            twin.apply_drift([scenario])
        current, n_lines = _take(twin, WINDOW_MINUTES)
        run = run_detectors(reference, current, catalog_of(twin.world), **detector_kwargs)
        outcomes.append(DrillOutcome(seed, scenario, run, n_lines))
    return outcomes
