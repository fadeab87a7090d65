"""Both group consumers (kafka-python, librdkafka) against the real broker: the same records,
commits that hold across a restart, assignment, high watermarks and positions."""

from __future__ import annotations

import time

import pytest

from ingestor.consumers import KINDS, CommitRejected, ConsumerSettings, Polled, open_consumer
from tests.ingestor.helpers import create_topic, produce

pytestmark = pytest.mark.integration


def drain(consumer, expected: int, timeout_s: float = 60) -> Polled:
    got = Polled()
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        got.extend(consumer.poll(0.5, 10_000))
    return got


@pytest.mark.parametrize("kind", KINDS)
def test_a_consumer_reads_every_record_once_and_its_commits_hold(kafka_broker, kind) -> None:
    topic = f"consumers-{kind}"
    create_topic(kafka_broker.bootstrap, topic)
    lines = [f"line {i}".encode() for i in range(3000)]
    produce(kafka_broker.bootstrap, topic, lines)
    events: list[tuple[str, list[int]]] = []
    settings = ConsumerSettings(bootstrap=kafka_broker.bootstrap, topic=topic,
                                group_id=f"g-{kind}", client_id="test", session_timeout_ms=6000)

    def consumer():
        return open_consumer(kind, settings, lambda p: events.append(("revoked", p)),
                             lambda p: events.append(("assigned", p)))

    first = consumer()
    got = drain(first, len(lines))
    assert sorted(got.values) == sorted(lines)
    assert len(got.partitions) == len(got.offsets) == len(got.timestamps_ms) == len(lines)
    assert all(ts > 1_600_000_000_000 for ts in got.timestamps_ms)
    assert first.assignment() == {0, 1, 2, 3} and ("assigned", [0, 1, 2, 3]) in events
    per_partition = {p: sum(1 for q in got.partitions if q == p) for p in range(4)}
    assert got.next_offsets() == {p: n for p, n in per_partition.items() if n}
    for p, n in per_partition.items():
        assert first.highwater(p) == n
    # commit only what was "written" of partition 0: half of it
    half = per_partition[0] // 2
    first.commit({0: half})
    first.close()

    second = consumer()
    again = drain(second, per_partition[0] - half + sum(per_partition.values()) - per_partition[0])
    assert sorted(o for p, o in zip(again.partitions, again.offsets, strict=True) if p == 0) == \
        list(range(half, per_partition[0]))
    assert second.position(0) == per_partition[0]
    second.close()


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_consumer_kind_is_refused(kind) -> None:
    with pytest.raises(ValueError, match="kafka-python, confluent"):
        open_consumer(kind + "-x", ConsumerSettings("127.0.0.1:1", "t", "g", "c"),
                      lambda p: None, lambda p: None)
    assert issubclass(CommitRejected, Exception)


@pytest.mark.parametrize("error", ["RebalanceInProgressError", "IllegalGenerationError",
                                   "UnknownMemberIdError", "CommitFailedError"])
def test_a_commit_refused_by_a_rebalancing_group_is_rejected_not_retried(error) -> None:
    """kafka-python answers a commit during a rebalance with RebalanceInProgressError; treated
    as an unavailable broker it was retried without polling, so the rebalance never finished
    and two instances waited on each other for ever (bench/ingest.py, 2 workers)."""
    import kafka.errors

    from ingestor.consumers import CommitRejected, KafkaPythonConsumer, commit_rejections

    class Refusing:
        def commit(self, offsets):
            raise getattr(kafka.errors, error)("group rebalancing")

    consumer = KafkaPythonConsumer.__new__(KafkaPythonConsumer)
    consumer._c, consumer.topic = Refusing(), "t"
    consumer._tp, consumer._oam = kafka.TopicPartition, kafka.structs.OffsetAndMetadata
    consumer._commit_failed = commit_rejections()  # what the constructor sets
    consumer._kafka_error = kafka.errors.KafkaError
    with pytest.raises(CommitRejected):
        consumer.commit({0: 10})


def test_next_offsets_claim_the_highest_offset_of_each_partition_plus_one() -> None:
    """After a rewind a partition's offsets need not rise within a batch: the claim is the
    highest, never the last one seen."""
    polled = Polled([b""] * 6, [1, 0, 1, 1, 0, 2], [5, 3, 7, 6, 2, 0], [0] * 6)
    assert polled.next_offsets() == {0: 4, 1: 8, 2: 1}
    assert Polled().next_offsets() == {}


def test_kafka_python_reports_a_revoked_assignment_as_gone(kafka_broker) -> None:
    """kafka-python keeps a revoked assignment in its own ``assignment()`` until the next join
    completes; a rejoin that stalls there looked assigned, so the ingestor's watchdog
    (``rejoin_after_s``) never rejoined. The wrapper reports what the listener was told."""
    topic = "consumers-revoked"
    create_topic(kafka_broker.bootstrap, topic)
    produce(kafka_broker.bootstrap, topic, [b"line"] * 100)
    revoked: list[list[int]] = []
    consumer = open_consumer("kafka-python", ConsumerSettings(
        bootstrap=kafka_broker.bootstrap, topic=topic, group_id="g-revoked", client_id="test",
        session_timeout_ms=6000), revoked.append, lambda p: None)
    assert len(drain(consumer, 100)) == 100
    assert consumer.assignment() == {0, 1, 2, 3}
    # what kafka-python's coordinator does when a rebalance starts (eager protocol): the
    # listener is told, the library's own assignment is replaced only when the join completes
    own = consumer._c.assignment()
    consumer._c._subscription.rebalance_listener.on_partitions_revoked(own)
    assert revoked[-1] == [0, 1, 2, 3]  # (the first join revokes nothing: [])
    assert {tp.partition for tp in consumer._c.assignment()} == {0, 1, 2, 3}
    assert consumer.assignment() == set()
    consumer.close()
