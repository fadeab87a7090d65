"""Parser throughput on a realistic mix (98 % watch minutes), one core.

    .venv/bin/python bench/parse.py [--quick]

Prints the median lines/s of five rounds with their spread and writes bench/results/parse.json
(parse-quick.json with ``--quick``, which is never published). Target (issue 3): >= 200,000 lines/s.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import interleave, write_result  # noqa: E402
from movierec_core import (  # noqa: E402
    AccountCreation,
    Rating,
    RecommendationRequest,
    format_event,
    parse,
)
from movierec_core.invalid import InvalidKind, make_invalid  # noqa: E402


def realistic_lines(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    start = datetime(2025, 3, 2)
    movies = [f"movie+title+{i}+{1950 + i % 70}" for i in range(2000)]
    lines = []
    for _ in range(n):
        t = start + timedelta(microseconds=rng.randrange(10**12))
        user = rng.randrange(1_000_000)
        r = rng.random()
        if r < 0.98:
            line = f"{t.isoformat(timespec='seconds')},{user},GET /data/m/{rng.choice(movies)}/{rng.randrange(150)}.mpg"
            lines.append(line.encode())
            continue
        if r < 0.99:
            event = Rating(t, user, rng.choice(movies), rng.randint(1, 5))
        elif r < 0.993:
            event = AccountCreation(t, user)
        elif r < 0.999:
            event = RecommendationRequest(t, user, "rec-1.svc:8082", 200,
                                          tuple(rng.sample(movies, 20)), "", rng.randrange(5, 200))
        else:
            lines.append(make_invalid(rng.choice(list(InvalidKind)[:-1]), rng))
            continue
        lines.append(format_event(event).encode())
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="200K lines instead of 2M")
    args = ap.parse_args()
    n = 200_000 if args.quick else 2_000_000
    lines = realistic_lines(n)

    def one_pass() -> float:
        t0 = time.perf_counter()
        for line in lines:
            parse(line)
        return n / (time.perf_counter() - t0)

    rate = interleave(5, {"parse": one_pass})["parse"]
    print(f"parse: {rate['median']:,.0f} lines/s on one core, median of 5 rounds "
          f"({rate['min']:,.0f} … {rate['max']:,.0f}; {n:,} lines, 98 % watch minutes)")
    path = write_result("parse", {"lines_per_s": rate, "lines": n},
                        {"median lines_per_s >= 200000": rate["median"] >= 200_000},
                        quick=args.quick)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
