from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from simulator.config import SimulatorConfig
from simulator.runner import Simulator, watch_through_by_server
from simulator.sinks import MemorySink, NullSink


def _simulator(world, **overrides) -> Simulator:
    """A simulation with a history: 20 simulated hours of organic choices (no lists), so that
    users have watched the broadly liked movies, as in a running service."""
    cfg = OmegaConf.structured(SimulatorConfig)
    cfg.merge_with_dotlist([f"{k}={v}" for k, v in overrides.items()])
    sim = Simulator(cfg, world=world.copy())
    sim.run(1200, NullSink())
    return sim


def test_closed_loop_oracle_beats_popularity_beats_random(small_world):
    """Users split into three arms under identical conditions, scored from the lines alone."""
    sim = _simulator(small_world, seed=21, **{"behaviour.session_rate_per_hour": 1.5})
    sim.use_arms([("oracle", 1), ("popularity", 1), ("random", 1)])
    sink = MemorySink()
    sim.run(180, sink)
    wt = watch_through_by_server(sink.lines)["watch_through"]
    assert wt["oracle"] >= 3 * wt["popularity"]
    assert wt["popularity"] >= wt["random"]


@pytest.mark.integration
def test_closed_loop_over_http_against_served_endpoints(small_world):
    sim = _simulator(small_world, seed=22, **{"behaviour.session_rate_per_hour": 1.5})
    oracle = sim.start_endpoint("oracle", port=0)
    popularity = sim.start_endpoint("popularity", port=0)
    try:
        sim.use_arms([("url", 1, oracle.url), ("url", 1, popularity.url)])
        sink = MemorySink()
        sim.run(150, sink)
    finally:
        sim.close()
    wt = watch_through_by_server(sink.lines)
    servers = {oracle.url.removeprefix("http://"), popularity.url.removeprefix("http://")}
    assert set(wt.index) == servers and (wt["requests"] > 50).all()
    assert wt.loc[oracle.url.removeprefix("http://"), "watch_through"] >= \
        3 * wt.loc[popularity.url.removeprefix("http://"), "watch_through"]
