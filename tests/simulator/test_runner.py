"""The simulated clock can jump forward to the wall clock (a canary on a cluster decides by
real time) but never back."""

from __future__ import annotations

from datetime import datetime

import pytest

from movierec_core.events import parse
from simulator.runner import Simulator
from simulator.sinks import MemorySink


def _times(sink: MemorySink) -> list[datetime]:
    return [parse(line).time for line in sink.lines if parse(line) is not None
            and hasattr(parse(line), "time")]


def test_advance_to_moves_the_next_minute_to_the_given_time() -> None:
    sim = Simulator.from_overrides(["world.n_users=300", "seed=3"])
    sink = MemorySink()
    sim.run(minutes=3, sink=sink)
    before = max(_times(sink))
    assert before < datetime(2025, 3, 2, 0, 3)
    target = datetime(2026, 12, 1, 10, 5)
    sim.advance_to(target)
    sink.lines.clear()
    sim.run(minutes=2, sink=sink)
    after = _times(sink)
    assert after and min(after) >= target and max(after) < datetime(2026, 12, 1, 10, 7)
    with pytest.raises(ValueError, match="only moves forward"):
        sim.advance_to(datetime(2026, 12, 1, 10, 0))
