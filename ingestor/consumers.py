"""The group consumer the ingestor reads with: kafka-python (default) or librdkafka's.

``ingestor.consumer=kafka-python`` wraps ``kafka.KafkaConsumer``; ``ingestor.consumer=confluent``
wraps ``confluent_kafka.Consumer`` (librdkafka: fetching, decompression and the record batches
in C, several times faster per record). Both give the ingestor the same small interface:
records as parallel lists (values, partitions, offsets, timestamps) rather than an object per
record, synchronous commits of ``{partition: next offset}``, the assignment, high watermarks and
positions. A commit the group refuses because it rebalanced raises :class:`CommitRejected`; a
broker that cannot be reached raises :class:`BrokerUnavailable`. Both are tested against the
real broker (``tests/ingestor/test_consumers.py``) and run the same ingestor tests.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("ingestor")
_second = operator.itemgetter(1)

# librdkafka prefetches into a local queue (64 MiB in all); a partition whose queue is over
# its thresholds is fetched again after fetch.queue.backoff.ms. At the default (1 s) a consumer
# that empties its queue faster than that waits for the next fetch (measured: 0.3 s of idle
# polls per 50,000-record batch at the end of a backlog); bench/ingest.py's raw consumer uses
# the same settings.
RDKAFKA_QUEUE = {"queued.max.messages.kbytes": 65536, "fetch.queue.backoff.ms": 10}

KINDS = ("kafka-python", "confluent")
Callback = Callable[[list[int]], None]


class CommitRejected(Exception):
    """The group rebalanced: the batch's partitions belong to someone else now."""


class BrokerUnavailable(Exception):
    """The broker could not be reached (poll, commit or metadata)."""


@dataclass
class Polled:
    values: list[bytes] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)
    nbytes: int = 0  # the values' bytes gathered by extend() (a batch's size bound)

    def __len__(self) -> int:
        return len(self.values)

    def extend(self, other: Polled) -> None:
        self.nbytes += sum(map(len, other.values))
        self.values += other.values
        self.partitions += other.partitions
        self.offsets += other.offsets
        self.timestamps_ms += other.timestamps_ms

    def next_offsets(self) -> dict[int, int]:
        """``{partition: highest offset + 1}``: what committing this batch claims."""
        if not self.offsets:
            return {}
        import numpy as np

        partitions = np.asarray(self.partitions, np.int64)
        offsets = np.asarray(self.offsets, np.int64)
        order = np.lexsort((offsets, partitions))  # by partition, then offset: the last of each
        partitions, offsets = partitions[order], offsets[order]
        last = np.append(partitions[1:] != partitions[:-1], True)
        return dict(zip(partitions[last].tolist(), (offsets[last] + 1).tolist(), strict=True))


class GroupConsumer(Protocol):
    background_group: bool  # the group protocol runs without poll() (brief polls are harmless)

    def poll(self, timeout_s: float, max_records: int) -> Polled: ...
    def commit(self, offsets: dict[int, int]) -> None: ...
    def assignment(self) -> set[int]: ...
    def highwater(self, partition: int) -> int | None: ...
    def position(self, partition: int) -> int | None: ...
    def close(self) -> None: ...


@dataclass
class ConsumerSettings:
    bootstrap: str
    topic: str
    group_id: str
    client_id: str
    auto_offset_reset: str = "earliest"
    fetch_max_bytes: int = 64 * 1024 * 1024
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    max_poll_records: int = 100_000
    check_crcs: bool = False
    session_timeout_ms: int = 10_000
    retry_backoff_max_s: float = 10.0
    # movierec_core.kafka_security: kafka-python keyword arguments, librdkafka settings
    security: dict = field(default_factory=dict)
    rdkafka_security: dict = field(default_factory=dict)


def open_consumer(kind: str, s: ConsumerSettings, on_revoked: Callback,
                  on_assigned: Callback) -> GroupConsumer:
    """Create and subscribe a group consumer of ``kind`` (one of :data:`KINDS`)."""
    if kind == "kafka-python":
        return KafkaPythonConsumer(s, on_revoked, on_assigned)
    if kind == "confluent":
        return ConfluentConsumer(s, on_revoked, on_assigned)
    raise ValueError(f"ingestor.consumer must be one of {', '.join(KINDS)}, not {kind!r}")


# ------------------------------------------------------------------------------ kafka-python
def commit_rejections() -> tuple[type[Exception], ...]:
    """kafka-python's errors for a commit the group refuses: it rebalanced, is rebalancing, or
    this member's generation is gone. A rejected commit, not an unavailable broker: retrying it
    without polling never lets the rebalance finish (two instances waited on each other for
    ever in bench/ingest.py)."""
    from kafka.errors import (
        CommitFailedError,
        IllegalGenerationError,
        RebalanceInProgressError,
        UnknownMemberIdError,
    )

    return (CommitFailedError, RebalanceInProgressError, IllegalGenerationError,
            UnknownMemberIdError)


class KafkaPythonConsumer:
    background_group = False  # the group protocol advances inside poll()

    def __init__(self, s: ConsumerSettings, on_revoked: Callback, on_assigned: Callback) -> None:
        import time

        from kafka import KafkaConsumer, TopicPartition
        from kafka.consumer.subscription_state import ConsumerRebalanceListener
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        self._tp, self._oam = TopicPartition, OffsetAndMetadata
        self._commit_failed = commit_rejections()
        self._kafka_error = KafkaError
        self.topic = s.topic
        consumer = KafkaConsumer(
            bootstrap_servers=s.bootstrap, group_id=s.group_id, client_id=s.client_id,
            enable_auto_commit=False, auto_offset_reset=s.auto_offset_reset,
            fetch_max_bytes=s.fetch_max_bytes, max_partition_fetch_bytes=s.max_partition_fetch_bytes,
            max_poll_records=s.max_poll_records, check_crcs=s.check_crcs,
            session_timeout_ms=s.session_timeout_ms,
            reconnect_backoff_max_ms=int(s.retry_backoff_max_s * 1000),
            heartbeat_interval_ms=max(1000, s.session_timeout_ms // 4),
            max_poll_interval_ms=600_000, **s.security)

        # what this member owns, from the listener's calls: kafka-python keeps a revoked
        # assignment in assignment() until the group's next join completes, so a rejoin that
        # stalls (seen under load in make test: revoked 0.2 s after the first join, no
        # assignment for 14 minutes) looked assigned and the ingestor never rejoined
        self._owned: set[int] = set()
        owned = self._owned

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                partitions = sorted(tp.partition for tp in revoked or ())
                owned.difference_update(partitions)
                on_revoked(partitions)

            def on_partitions_assigned(self, assigned: Any) -> None:
                partitions = sorted(tp.partition for tp in assigned or ())
                owned.update(partitions)
                on_assigned(partitions)

        # subscribe only once the topic's metadata is known: a group joined before it gets an
        # empty assignment, and kafka-python 3.0 can then stall in the rejoin
        deadline = time.monotonic() + 30
        while not consumer.partitions_for_topic(s.topic):
            if time.monotonic() > deadline:
                log.warning("topic %s has no partitions yet; subscribing anyway", s.topic)
                break
            time.sleep(0.5)
        consumer.subscribe([s.topic], listener=Listener())
        self._c = consumer

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        try:
            polled = self._c.poll(timeout_ms=max(1, int(timeout_s * 1000)),
                                  max_records=max_records)
        except self._kafka_error as exc:
            raise BrokerUnavailable(str(exc)) from exc
        out = Polled()
        for tp, records in polled.items():
            p = tp.partition
            out.values += [r.value for r in records]
            out.partitions += [p] * len(records)
            out.offsets += [r.offset for r in records]
            out.timestamps_ms += [r.timestamp for r in records]
        return out

    def commit(self, offsets: dict[int, int]) -> None:
        try:
            self._c.commit({self._tp(self.topic, p): self._oam(o, "", -1)
                            for p, o in offsets.items()})
        except self._commit_failed as exc:
            raise CommitRejected(str(exc)) from exc
        except self._kafka_error as exc:
            raise BrokerUnavailable(str(exc)) from exc

    def assignment(self) -> set[int]:
        """The partitions this member owns: assigned and not revoked since."""
        return set(self._owned)

    def highwater(self, partition: int) -> int | None:
        return self._c.highwater(self._tp(self.topic, partition))

    def position(self, partition: int) -> int | None:
        return self._c.position(self._tp(self.topic, partition), timeout_ms=1000)

    def close(self) -> None:
        self._c.close()


# ---------------------------------------------------------------------------------- confluent
class ConfluentConsumer:
    """librdkafka's consumer. Offsets are committed synchronously and only explicitly;
    ``enable.auto.offset.store`` is off, so nothing is committed that the ingestor did not
    write."""

    background_group = True  # heartbeats and rebalances run on librdkafka's threads

    def __init__(self, s: ConsumerSettings, on_revoked: Callback, on_assigned: Callback) -> None:
        import confluent_kafka as ck

        self._ck = ck
        self.topic = s.topic
        self._c = ck.Consumer({
            "bootstrap.servers": s.bootstrap, "group.id": s.group_id, "client.id": s.client_id,
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": s.auto_offset_reset,
            "fetch.max.bytes": s.fetch_max_bytes,
            "max.partition.fetch.bytes": s.max_partition_fetch_bytes,
            **RDKAFKA_QUEUE,
            "check.crcs": s.check_crcs, "session.timeout.ms": s.session_timeout_ms,
            "reconnect.backoff.max.ms": int(s.retry_backoff_max_s * 1000),
            "max.poll.interval.ms": 600_000,
            "logger": logging.getLogger("ingestor.librdkafka"),
            **s.rdkafka_security,
        })
        self._assigned: set[int] = set()
        self._earliest = s.auto_offset_reset == "earliest"

        def assigned(_consumer: Any, partitions: list) -> None:
            self._assigned = {tp.partition for tp in partitions}
            on_assigned(sorted(self._assigned))

        def revoked(_consumer: Any, partitions: list) -> None:
            self._assigned -= {tp.partition for tp in partitions}
            on_revoked(sorted(tp.partition for tp in partitions))

        self._c.subscribe([s.topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        ck = self._ck
        try:
            messages = self._c.consume(num_messages=max(1, min(max_records, 1_000_000)),
                                       timeout=max(0.001, timeout_s))
        except ck.KafkaException as exc:
            raise BrokerUnavailable(str(exc)) from exc
        message = ck.Message
        errors = list(map(message.error, messages))
        if errors.count(None) != len(errors):  # rare: partition ends, transient errors
            kept = []
            for m, err in zip(messages, errors, strict=True):
                if err is None:
                    kept.append(m)
                elif err.code() == ck.KafkaError._PARTITION_EOF:
                    continue
                elif err.fatal():
                    raise BrokerUnavailable(str(err))
                else:
                    log.warning("consumer: %s", err)
            messages = kept
        # one C-level pass per field, no Python frame per record
        return Polled(list(map(message.value, messages)), list(map(message.partition, messages)),
                      list(map(message.offset, messages)),
                      list(map(_second, map(message.timestamp, messages))))

    def commit(self, offsets: dict[int, int]) -> None:
        ck = self._ck
        try:
            self._c.commit(offsets=[ck.TopicPartition(self.topic, p, o)
                                    for p, o in offsets.items()], asynchronous=False)
        except ck.KafkaException as exc:
            code = exc.args[0].code() if exc.args and hasattr(exc.args[0], "code") else None
            if code in (ck.KafkaError.REBALANCE_IN_PROGRESS, ck.KafkaError.ILLEGAL_GENERATION,
                        ck.KafkaError.UNKNOWN_MEMBER_ID, ck.KafkaError._ASSIGNMENT_LOST,
                        ck.KafkaError._STATE):
                raise CommitRejected(str(exc)) from exc
            raise BrokerUnavailable(str(exc)) from exc

    def assignment(self) -> set[int]:
        return set(self._assigned)

    def highwater(self, partition: int) -> int | None:
        # librdkafka updates the high watermark from every fetch response: no round trip to
        # the broker per call (the ingestor asks after every batch); ask the broker only
        # before the first fetch of the partition
        tp = self._ck.TopicPartition(self.topic, partition)
        try:
            _low, high = self._c.get_watermark_offsets(tp, cached=True)
            if high < 0:
                _low, high = self._c.get_watermark_offsets(tp, timeout=1.0, cached=False)
        except self._ck.KafkaException:
            return None
        return None if high < 0 else high

    def position(self, partition: int) -> int | None:
        try:
            (tp,) = self._c.position([self._ck.TopicPartition(self.topic, partition)])
        except self._ck.KafkaException:
            return None
        if tp.offset >= 0:
            return tp.offset
        # nothing fetched yet: the committed offset, else where the reset policy starts
        try:
            committed = self._c.committed([self._ck.TopicPartition(self.topic, partition)],
                                          timeout=1.0)
            if committed and committed[0].offset >= 0:
                return committed[0].offset
            low, high = self._c.get_watermark_offsets(
                self._ck.TopicPartition(self.topic, partition), timeout=1.0, cached=False)
        except self._ck.KafkaException:
            return None
        return low if self._earliest else high

    def close(self) -> None:
        self._c.close()
