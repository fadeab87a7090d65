"""The real broker: produce 10,000 contract lines, consume them in a consumer group with committed
offsets, restart the consumer mid-way, and reconcile: every line consumed, none skipped."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from movierec_core import AccountCreation, Rating, Rejection, WatchMinute, format_event, parse

pytestmark = pytest.mark.integration


def _lines(n: int, seed: int = 3) -> list[bytes]:
    rng = random.Random(seed)
    start = datetime(2025, 3, 2, 14, 0, 0)
    out = []
    for i in range(n):
        t = start + timedelta(milliseconds=250 * i)
        user = rng.randrange(1000)
        r = rng.random()
        if r < 0.98:
            event = WatchMinute(t, user, f"movie+{rng.randrange(50)}+1999", i)
        elif r < 0.995:
            event = Rating(t, user, f"movie+{rng.randrange(50)}+1999", rng.randint(1, 5))
        else:
            event = AccountCreation(t, user)
        out.append(format_event(event).encode())
    return out


def _consume(bootstrap: str, topic: str, group: str, limit: int | None) -> list[bytes]:
    """Consume up to ``limit`` messages, committing after each poll batch, then close."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=500, consumer_timeout_ms=10_000,
    )
    got: list[bytes] = []
    try:
        while limit is None or len(got) < limit:
            batch = consumer.poll(timeout_ms=2000, max_records=500 if limit is None else min(500, limit - len(got)))
            if not batch:
                if limit is None:
                    break
                continue
            for records in batch.values():
                got.extend(r.value for r in records)
            consumer.commit()
    finally:
        consumer.close()
    return got


def test_consumer_group_restart_loses_and_skips_nothing(kafka_broker) -> None:
    topic = "movielog-restart"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    lines = _lines(10_000)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=20, batch_size=256 * 1024)
    for line in lines:
        producer.send(topic, line)
    producer.flush()
    producer.close()

    first = _consume(kafka_broker.bootstrap, topic, "g1", limit=4_000)
    second = _consume(kafka_broker.bootstrap, topic, "g1", limit=None)  # restarted consumer resumes

    assert len(first) == 4_000
    consumed = first + second
    assert Counter(consumed) == Counter(lines)  # every line once: none skipped, none repeated
    kinds = Counter(type(parse(v)).__name__ for v in consumed)
    assert "Rejection" not in kinds
    assert sum(kinds.values()) == 10_000
    assert not any(isinstance(parse(v), Rejection) for v in second)
