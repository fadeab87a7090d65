"""A fast, deterministic stream of contract lines with injected faults, and its ledger.

This is the behaviour engine run as fast as possible with an in-process recommender (no HTTP,
so the same seed gives byte-identical lines). Consumers (ingestor tests, benchmarks, fuzzing)
reconcile against the :class:`~simulator.ledger.Ledger`::

    world = World.build(WorldConfig(n_users=2000, n_movies=3000))
    lines, ledger = generate_lines(world, 100_000, seed=1, invalid_rate=0.01, duplicate_rate=0.01)
    # lake rows per kind == ledger.valid[kind]; DLQ == ledger.invalid_total;
    # redeliveries dropped == ledger.duplicates; len(lines) == ledger.lines_total
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from omegaconf import OmegaConf

from simulator.behaviour import Simulation
from simulator.config import SimulatorConfig
from simulator.ledger import Ledger
from simulator.recommenders import builtin
from simulator.world import World


def simulation_config(seed: int = 0, invalid_rate: float = 0.0, duplicate_rate: float = 0.0,
                      **overrides: Any) -> Any:
    """A typed simulator config (defaults + dotted overrides such as ``behaviour.k=10``)."""
    cfg = OmegaConf.structured(SimulatorConfig)
    cfg.seed = seed
    cfg.faults.invalid_rate = invalid_rate
    cfg.faults.duplicate_rate = duplicate_rate
    for key, value in overrides.items():
        OmegaConf.update(cfg, key.replace("__", "."), value)
    return cfg


def iter_batches(world: World, seed: int = 0, invalid_rate: float = 0.0,
                 duplicate_rate: float = 0.0, recommender: str | None = "popularity",
                 cfg: Any = None) -> tuple[Iterator[list[bytes]], Simulation]:
    """An endless iterator of per-minute batches, and the simulation (its ``.ledger`` grows).

    The simulation runs on a copy of ``world`` (``sim.world``): sign-ups and drift grow it.
    """
    cfg = cfg if cfg is not None else simulation_config(seed, invalid_rate, duplicate_rate)
    world = world.copy()
    sim = Simulation(world, cfg)
    if recommender:
        sim.recommender = builtin(recommender, world, int(cfg.behaviour.k),
                                sim.seen_in_thread, seed)

    def batches() -> Iterator[list[bytes]]:
        while True:
            yield sim.step()

    return batches(), sim


def generate_lines(world: World, n_lines: int, seed: int = 0, invalid_rate: float = 0.0,
                   duplicate_rate: float = 0.0, recommender: str | None = "popularity",
                   cfg: Any = None) -> tuple[list[bytes], Ledger]:
    """At least ``n_lines`` lines (whole simulated minutes) and the ledger of exactly those.

    ``invalid_rate`` is invalid lines per valid line; ``duplicate_rate`` the share of valid
    lines delivered twice. ``recommender``: the in-process list source (oracle | popularity |
    random | None). Deterministic for (world, seed, rates).
    """
    batches, sim = iter_batches(world, seed, invalid_rate, duplicate_rate, recommender, cfg)
    lines: list[bytes] = []
    for batch in batches:
        lines += batch
        if len(lines) >= n_lines:
            break
    return lines, sim.ledger
