"""What every benchmark shares: interleaved rounds, and bench/results/<name>.json.

A figure a skeptic accepts compares like with like in one run: the same work on both sides, the
same number of processes, rounds interleaved (A B A B ...) so that a change of the machine's
load hits both sides alike, and the median with the spread of the rounds rather than a best
run. ``interleave`` runs the rounds; ``write_result`` records the load average when the
benchmark started (this module's import) and when it wrote its result. A ``--quick`` run
writes ``<name>-quick.json``, which nothing publishes (``bench/publish.py`` reads the full
runs only).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
LOAD_AT_START = os.getloadavg()[0]


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) clock ticks of every CPU so far (/proc/stat), None where there is none.
    Steal is the time a virtual machine's CPUs were runnable but ran another guest."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


TICKS_AT_START = cpu_ticks()


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the rounds themselves (rounded for the JSON)."""
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "rounds": [round(v, 4) for v in values]}


def interleave(rounds: int, contenders: Mapping[str, Callable[[], float]]) -> dict[str, dict]:
    """Run each contender once per round, in the same order each round (A B A B ...); each call
    returns the round's figure. Returns ``{name: spread(figures)}``."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    figures: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            figures[name].append(float(run()))
    return {name: spread(values) for name, values in figures.items()}


def ratio_rounds(numerator: dict, denominator: dict) -> dict[str, Any]:
    """Per-round ratios of two interleaved contenders (round i against round i), summarised."""
    pairs = zip(numerator["rounds"], denominator["rounds"], strict=True)
    return spread([a / b for a, b in pairs])


def result_path(name: str, quick: bool = False) -> Path:
    return RESULTS / f"{name}{'-quick' if quick else ''}.json"


def steal_share(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    if start is None or end is None or end[1] <= start[1]:
        return None
    return round((end[0] - start[0]) / (end[1] - start[1]), 4)


def cpu_model() -> str:
    """The processor's name as /proc/cpuinfo gives it (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_result(name: str, figures: dict, targets: dict[str, bool],
                 path: Path | str | None = None, quick: bool = False) -> Path:
    """Write ``bench/results/<name>.json`` (``<name>-quick.json`` for a quick run, or ``path``)
    and return its path. The load averages say how far the absolute figures can be trusted
    (ratios between interleaved rounds are the stable ones)."""
    load_after = os.getloadavg()[0]
    payload = {
        **figures,
        "quick": quick,
        "load_average_1m": round(max(LOAD_AT_START, load_after), 2),
        "load_average_1m_before": round(LOAD_AT_START, 2),
        "load_average_1m_after": round(load_after, 2),
        # the share of CPU time the host gave other guests during the run (the same code ran
        # ~25 % slower between two runs here, with the load average alike)
        "cpu_steal_share": steal_share(TICKS_AT_START, cpu_ticks()),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        # the same code measured 0.58 and 0.89 for the serving ratio on two hosts of this kind:
        # the figures belong to the processor they were taken on
        "cpu_model": cpu_model(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "targets": targets,
    }
    path = Path(path) if path is not None else result_path(name, quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_result(name: str) -> dict[str, Any]:
    return json.loads(result_path(name).read_text())
