"""DeadLetters against a scripted producer: each line lands in the DLQ once, whatever the
broker does."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from ingestor.dlq import DeadLetters, headers_of
from ingestor.pipeline import Rejected
from movierec_core.events import Reason, Rejection


class Future:
    def __init__(self) -> None:
        self.is_done, self.exception = False, None

    def get(self, timeout=None):
        if not self.is_done:
            raise KafkaTimeoutError("still in flight")
        if self.exception is not None:
            raise self.exception
        return "metadata"


class Producer:
    """Holds sends like kafka-python does; ``script`` says what each flush settles."""

    def __init__(self, script: list[str]) -> None:
        # per flush: "timeout" (nothing settles) | "ack" | "fail" (written, ack lost) | "lost"
        self.script = script
        self.sent: list[tuple[bytes, list]] = []
        self.landed: list[tuple[bytes, list]] = []  # what the broker holds
        self.pending: list[tuple[Future, bytes, list]] = []

    def send(self, topic, value, key, headers):
        future = Future()
        self.sent.append((value, headers))
        self.pending.append((future, value, headers))
        return future

    def flush(self, timeout=None):
        step = self.script.pop(0) if self.script else "ack"
        if step == "timeout":
            raise KafkaTimeoutError("Timeout after waiting for 30 secs")
        for future, value, headers in self.pending:
            future.is_done = True
            if step != "lost":
                self.landed.append((value, headers))
            if step in ("fail", "lost"):
                future.exception = NotLeaderForPartitionError()
        self.pending = []


class Reader:
    """The DLQ topic as the broker holds it (one partition)."""

    def __init__(self, producer: Producer) -> None:
        self.producer, self.read = producer, 0

    def partitions_for_topic(self, topic):
        return {0}

    def assign(self, tps):
        pass

    def seek_to_beginning(self, *tps):
        self.read = 0

    def end_offsets(self, tps):
        return {tp: len(self.producer.landed) for tp in tps}

    def position(self, tp):
        return self.read

    def poll(self, timeout_ms=0):
        records = [SimpleNamespace(headers=h) for _, h in self.producer.landed[self.read:]]
        self.read = len(self.producer.landed)
        return {0: records}


def rejected(n: int) -> list[Rejected]:
    return [Rejected(partition=1, offset=100 + i, timestamp_ms=0,
                     rejection=Rejection(Reason.BAD_MINUTE, "detail", f"bad line {i}".encode()))
            for i in range(n)]


def dead_letters(script: list[str]) -> tuple[DeadLetters, Producer]:
    producer = Producer(script)
    return DeadLetters(producer, Reader(producer), "events", "events.dlq", "test"), producer


def test_a_send_still_in_flight_after_a_flush_timeout_is_waited_for_not_sent_again() -> None:
    dlq, producer = dead_letters(["timeout", "timeout", "ack"])
    assert dlq.send(rejected(3), retry_backoff_s=0.001) == 3
    assert [v for v, _ in producer.sent] == [b"bad line 0", b"bad line 1", b"bad line 2"]
    assert len(producer.landed) == 3
    assert dlq.send(rejected(3), retry_backoff_s=0.001) == 0  # a replayed batch: already held
    assert len(producer.sent) == 3


def test_a_send_that_failed_but_landed_is_found_in_the_dlq_tail_and_not_sent_again() -> None:
    dlq, producer = dead_letters(["fail"])
    assert dlq.send(rejected(2), retry_backoff_s=0.001) == 0  # none acknowledged ...
    assert len(producer.sent) == 2 and len(producer.landed) == 2  # ... yet each is there once


def test_a_send_that_failed_and_did_not_land_is_sent_again() -> None:
    dlq, producer = dead_letters(["lost"])
    assert dlq.send(rejected(2), retry_backoff_s=0.001) == 2
    assert len(producer.sent) == 4 and len(producer.landed) == 2


def test_gives_up_when_the_deadline_passes_with_sends_in_flight() -> None:
    dlq, producer = dead_letters(["timeout"] * 100)
    with pytest.raises(TimeoutError, match="still in flight; giving up"):
        dlq.send(rejected(1), retry_backoff_s=0.001, give_up_at=0.0)
    assert len(producer.sent) == 1


def test_headers_name_the_origin() -> None:
    item = rejected(1)[0]
    headers = dict(headers_of(item, "events", "ingestor-a"))
    assert headers["reason"] == b"bad_minute" and headers["source_offset"] == b"100"
    assert headers["source_partition"] == b"1" and headers["source_topic"] == b"events"
