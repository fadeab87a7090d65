"""`python -m demo`: start a real Kafka broker, produce contract events, consume and summarise.

This is the foundation stage of the demo (issue 3); later stages extend it into the closed loop.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from datetime import datetime, timedelta

from kafka import KafkaConsumer, KafkaProducer

from devstack.kafka import KafkaBroker
from movierec_core import (
    AccountCreation,
    Rating,
    RecommendationRequest,
    Rejection,
    WatchMinute,
    format_event,
    parse,
)
from movierec_core.invalid import InvalidKind, make_invalid


def sample_lines(n: int, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    start = datetime(2025, 3, 2, 14)
    movies = ["the+lion+king+1994", "toy+story+1995", "heat+1995", "am\u00e9lie+2001", "tom+&+jerry+1992"]
    lines: list[bytes] = []
    for i in range(n):
        t = start + timedelta(seconds=i)
        user = rng.randrange(500)
        r = rng.random()
        if r < 0.97:
            event = WatchMinute(t, user, rng.choice(movies), rng.randrange(120))
        elif r < 0.98:
            event = Rating(t, user, rng.choice(movies), rng.randint(1, 5))
        elif r < 0.985:
            event = AccountCreation(t, 10_000 + i)
        elif r < 0.99:
            event = RecommendationRequest(t, user, "rec-1.svc:8082", 200, tuple(movies[:3]), "", 42)
        else:
            lines.append(make_invalid(rng.choice(list(InvalidKind)[:-1]), rng))
            continue
        lines.append(format_event(event).encode())
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    ap.add_argument("--events", type=int, default=20_000)
    args = ap.parse_args(argv)
    print("== movierec demo: real Kafka broker (KRaft) from Maven Central jars")
    with KafkaBroker() as broker:
        print(f"broker up on {broker.bootstrap}")
        lines = sample_lines(args.events)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20, batch_size=512 * 1024)
        t0 = time.perf_counter()
        for line in lines:
            producer.send("movielog", line)
        producer.flush()
        producer.close()
        print(f"produced {len(lines):,} lines in {time.perf_counter() - t0:.2f}s")
        consumer = KafkaConsumer("movielog", bootstrap_servers=broker.bootstrap, group_id="demo",
                                 auto_offset_reset="earliest", consumer_timeout_ms=5000)
        kinds: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for record in consumer:
            result = parse(record.value)
            if isinstance(result, Rejection):
                reasons[result.reason.value] += 1
            else:
                kinds[result.kind.value] += 1
            if sum(kinds.values()) + sum(reasons.values()) == len(lines):
                break
        consumer.close()
    print("parsed events per kind:")
    for kind, count in sorted(kinds.items()):
        print(f"  {kind:<10} {count:>8,}")
    print(f"rejected (would be dead-lettered): {sum(reasons.values()):,} {dict(sorted(reasons.items()))}")
    return 0 if sum(kinds.values()) + sum(reasons.values()) == len(lines) else 1


if __name__ == "__main__":
    sys.exit(main())
