from __future__ import annotations

from collections import Counter

import pytest

from movierec_core.events import Rejection, parse
from simulator.sinks import KafkaSink
from simulator.stream import generate_lines


@pytest.mark.integration
def test_kafka_sink_delivers_exactly_the_ledger(kafka_broker, small_world):
    from kafka import KafkaConsumer

    lines, ledger = generate_lines(small_world, 20_000, seed=8, invalid_rate=0.01,
                                   duplicate_rate=0.01)
    topic = "simulator-sink-test"
    sink = KafkaSink(kafka_broker.bootstrap, topic, partitions=2, linger_ms=20)
    sink.send(lines)
    sink.close()
    assert sink.lines_sent == ledger.lines_total

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=5000, max_partition_fetch_bytes=8 << 20,
                             fetch_max_bytes=16 << 20)
    received = [message.value for message in consumer]
    consumer.close()
    assert len(received) == ledger.lines_total
    assert Counter(received) == Counter(lines)
    distinct = set(received)
    valid = {line for line in distinct if not isinstance(parse(line), Rejection)}
    assert len(valid) == ledger.valid_total
    assert len(distinct) - len(valid) == ledger.invalid_total
    assert len(received) - len(distinct) == ledger.duplicates
