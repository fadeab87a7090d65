"""Small worlds shared by the simulator tests (built once per session: they are deterministic)."""

from __future__ import annotations

import pytest

from simulator.world import World, WorldConfig


@pytest.fixture(scope="session")
def small_world() -> World:
    return World.build(WorldConfig(seed=11, n_users=1500, n_movies=4000))


@pytest.fixture(scope="session")
def tiny_world() -> World:
    return World.build(WorldConfig(seed=5, n_users=200, n_movies=600))
