"""The dead-letter topic: every invalid line once, with its reason and origin.

Record format (``<topic>.dlq`` by default):

* value: the original line, byte for byte;
* key: the source partition as ASCII digits (so one source partition's dead letters stay ordered
  in one DLQ partition);
* headers (UTF-8): ``reason`` (a :class:`movierec_core.events.Reason` code), ``detail``,
  ``source_topic``, ``source_partition``, ``source_offset``, ``source_timestamp_ms`` (the Kafka
  record timestamp), ``dead_lettered_at`` (ISO-8601 UTC), ``ingestor`` (instance id).

A batch is dead-lettered (and acknowledged by the broker) before its offsets are committed, so
a crash can replay lines that were already dead-lettered. :class:`DeadLetters` reads the DLQ
topic's tail on start and on each partition assignment and skips (source partition, offset)
pairs it already holds: DLQ count == invalid line count, whatever the restarts. A dead letter is
sent again only when the producer has given up on it (never while it may still be in the
producer's buffer, e.g. after a flush timed out during a broker outage) and the DLQ tail, re-read,
does not hold it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ingestor.pipeline import Rejected

log = logging.getLogger(__name__)


def headers_of(item: Rejected, topic: str, instance: str) -> list[tuple[str, bytes]]:
    r = item.rejection
    return [
        ("reason", str(r.reason).encode()),
        ("detail", r.detail[:500].encode("utf-8", "replace")),
        ("source_topic", topic.encode()),
        ("source_partition", str(item.partition).encode()),
        ("source_offset", str(item.offset).encode()),
        ("source_timestamp_ms", str(item.timestamp_ms).encode()),
        ("dead_lettered_at", datetime.now(UTC).isoformat().encode()),
        ("ingestor", instance.encode()),
    ]


def origin_of(headers: Sequence[tuple[str, bytes]]) -> tuple[str, int, int] | None:
    h = dict(headers or ())
    try:
        return (h["source_topic"].decode(), int(h["source_partition"]), int(h["source_offset"]))
    except (KeyError, ValueError):
        return None


class DeadLetters:
    """Produces dead letters and remembers which source offsets the DLQ already holds."""

    def __init__(self, producer: KafkaProducer, reader: KafkaConsumer, source_topic: str,
                 dlq_topic: str, instance: str) -> None:
        self.producer = producer
        self.reader = reader
        self.source_topic = source_topic
        self.dlq_topic = dlq_topic
        self.instance = instance
        self._held: dict[int, set[int]] = defaultdict(set)  # source partition -> offsets
        self._assigned_dlq: set[TopicPartition] = set()
        self.stale = False  # set on partition assignment: another instance may have written

    def refresh(self, timeout_s: float = 30.0) -> None:
        """Read the DLQ topic from where this reader stopped to its current end."""
        partitions = self.reader.partitions_for_topic(self.dlq_topic) or set()
        tps = {TopicPartition(self.dlq_topic, p) for p in partitions}
        if tps != self._assigned_dlq:
            new = tps - self._assigned_dlq
            self.reader.assign(sorted(tps))
            if new:
                self.reader.seek_to_beginning(*sorted(new))
            self._assigned_dlq = tps
        if not tps:
            return
        end = self.reader.end_offsets(sorted(tps))
        deadline = time.monotonic() + timeout_s
        while any(self.reader.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {self.dlq_topic} to its end")
            for records in self.reader.poll(timeout_ms=200).values():
                for rec in records:
                    origin = origin_of(rec.headers)
                    if origin and origin[0] == self.source_topic:
                        self._held[origin[1]].add(origin[2])

    def forget_below(self, committed: dict[int, int]) -> None:
        """Offsets below a committed position are never replayed: stop remembering them."""
        for partition, offset in committed.items():
            held = self._held.get(partition)
            if held:
                self._held[partition] = {o for o in held if o >= offset}

    def send(self, items: Iterable[Rejected], retry_backoff_s: float = 0.5,
             max_backoff_s: float = 10.0, give_up_at: float | None = None) -> int:
        """Dead-letter ``items`` not yet in the DLQ; returns how many were sent.

        Blocks until the broker acknowledged all of them (retrying with backoff while it is
        unavailable), so the caller may commit afterwards."""
        pending, seen = [], set()
        for item in items:  # a rebalance can put the same record in a batch twice
            where = (item.partition, item.offset)
            if where not in seen:
                seen.add(where)
                pending.append(item)
        sent = 0
        backoff = retry_backoff_s
        while True:
            if self.stale:
                try:
                    self.refresh(timeout_s=10)
                    self.stale = False
                except Exception as exc:  # noqa: BLE001 - broker away: wait, then read again
                    self._wait(f"cannot read the DLQ tail ({exc})", backoff, give_up_at)
                    backoff = min(backoff * 2, max_backoff_s)
                    continue
            pending = [i for i in pending if i.offset not in self._held.get(i.partition, ())]
            if not pending:
                return sent
            futures = [(item, self.producer.send(
                self.dlq_topic, value=item.rejection.line, key=str(item.partition).encode(),
                headers=headers_of(item, self.source_topic, self.instance))) for item in pending]
            self._settle(futures, retry_backoff_s, max_backoff_s, give_up_at)
            failed = []
            for item, future in futures:
                try:
                    future.get(timeout=0)
                except Exception:  # noqa: BLE001 - failed for good (expired, rejected): again
                    failed.append(item)
                else:
                    self._held[item.partition].add(item.offset)
                    sent += 1
            pending = failed
            if pending:
                # some "failed" sends may have landed after all: re-read before sending again
                self.stale = True
                self._wait(f"{len(pending)} dead letters not acknowledged", backoff, give_up_at)
                backoff = min(backoff * 2, max_backoff_s)

    def _settle(self, futures: Sequence[tuple[Rejected, object]], backoff: float,
                max_backoff_s: float, give_up_at: float | None) -> None:
        """Flush until the producer has settled every send (acknowledged or failed for good).

        A send still in the producer's buffer is neither: it may land later (the producer retries
        until its ``delivery_timeout_ms``), so sending the line again would write it twice."""
        while True:
            try:
                self.producer.flush(timeout=30)
            except Exception as exc:  # noqa: BLE001 - a broker outage: keep waiting below
                log.warning("dead-letter flush failed (%s)", exc)
            in_flight = sum(not future.is_done for _, future in futures)
            if not in_flight:
                return
            self._wait(f"{in_flight} dead letters still in flight", backoff, give_up_at)
            backoff = min(backoff * 2, max_backoff_s)

    @staticmethod
    def _wait(why: str, backoff: float, give_up_at: float | None) -> None:
        if give_up_at is not None and time.monotonic() > give_up_at:
            raise TimeoutError(f"Kafka broker unavailable: {why}; giving up")
        log.warning("Kafka broker unavailable: %s; retrying in %.1fs", why, backoff)
        time.sleep(backoff)
