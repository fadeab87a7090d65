"""Simulator throughput: contract lines per second into a file sink, on one core.

    .venv/bin/python bench/simulate.py           # full size: 10,000 users, 20,000 movies
    .venv/bin/python bench/simulate.py --quick   # small world, short run

Measures the steady state (after a warm-up in simulated time, so that sessions are under
way) of the behaviour engine with in-process popularity lists (no HTTP), without and with fault
injection (1 % invalid lines, 1 % duplicates), and a baseline in the same run: writing the
same number of pre-formatted lines to a file (the sink's ceiling). Writes
bench/results/simulate.json.

Rates are per CPU-second of the (single-core pinned) process: on a machine shared with other
work, wall-clock rates measure the neighbours; ``events_per_s_wall`` is reported alongside.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

from bench.common import interleave, ratio_rounds, write_result  # noqa: E402
from simulator.sinks import FileSink  # noqa: E402
from simulator.stream import iter_batches  # noqa: E402
from simulator.world import World, WorldConfig  # noqa: E402

TARGET = 100_000


def measure(world: World, minutes: int, warmup: int, invalid: float, dup: float,
            path: Path) -> tuple[float, float, int]:
    """(lines per CPU-second of this process, lines per wall second, lines)."""
    batches, sim = iter_batches(world, seed=1, invalid_rate=invalid, duplicate_rate=dup)
    for _ in range(warmup):
        next(batches)
    sink = FileSink(path)
    lines = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(minutes):
        batch = next(batches)
        sink.send(batch)
        lines += len(batch)
    sink.flush()
    cpu = time.process_time() - cpu_started
    elapsed = time.perf_counter() - started
    sink.close()
    return lines / cpu, lines / elapsed, lines


def baseline(path: Path, n: int) -> float:
    """Lines per CPU-second of writing pre-formatted lines: the file sink's ceiling."""
    line = b"2025-03-02T14:07:33,48211,GET /data/m/the+lion+king+1994/57.mpg"
    batch = [line] * 5000
    sink = FileSink(path)
    started = time.process_time()
    for _ in range(max(1, n // len(batch))):
        sink.send(batch)
    sink.flush()
    elapsed = time.process_time() - started
    sink.close()
    return max(1, n // len(batch)) * len(batch) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small world, short run")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    users, movies, minutes, warmup = ((2_000, 3_000, 60, 60) if args.quick
                                      else (10_000, 20_000, 240, 180))
    with threadpool_limits(1), tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        world = World.build(WorldConfig(n_users=users, n_movies=movies))
        build_s = time.perf_counter() - started
        tmpdir = Path(tmp)
        n_clean = 0

        def clean_round() -> float:
            nonlocal n_clean
            rate, _wall, n_clean = measure(world, minutes, warmup, 0.0, 0.0, tmpdir / "clean.txt")
            return rate

        rates = interleave(3, {
            "clean": clean_round,
            "with_faults": lambda: measure(world, minutes, warmup, 0.01, 0.01,
                                           tmpdir / "faulty.txt")[0],
            "raw_file": lambda: baseline(tmpdir / "raw.txt", max(n_clean, 100_000)),
        })
    clean = rates["clean"]["median"]
    figures = {
        "events_per_cpu_s": rates["clean"],
        "events_per_cpu_s_with_faults": rates["with_faults"],
        "raw_file_lines_per_cpu_s": rates["raw_file"],
        "ratio_to_raw_file": ratio_rounds(rates["clean"], rates["raw_file"]),
        "lines_per_round": n_clean,
        "world_build_s": round(build_s, 3),
        "n_users": users,
        "n_movies": movies,
        "simulated_minutes": minutes,
    }
    out = write_result("simulate", figures, {f"median events_per_cpu_s >= {TARGET}": clean >= TARGET},
                       quick=args.quick)
    print(f"simulator → file sink, one core, median of 3 interleaved rounds: {clean:,.0f} events "
          f"per CPU-second ({rates['clean']['min']:,.0f} … {rates['clean']['max']:,.0f}); "
          f"{rates['with_faults']['median']:,.0f} with 1 % invalid + 1 % duplicates; raw file "
          f"writes {rates['raw_file']['median']:,.0f} lines/s; world of {users:,} users × "
          f"{movies:,} movies built in {build_s:.1f} s")
    print(f"target events_per_cpu_s >= {TARGET:,}: {'met' if clean >= TARGET else 'NOT met'} → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
