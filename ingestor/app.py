"""The consumer loop: Kafka -> (dead letters, lake, online store, enrichment) -> commit.

One batch at a time, in this order, so that a crash anywhere loses nothing and duplicates
nothing visible:

1. poll until ``batch_max_records`` or ``batch_max_wait_s``;
2. parse (:func:`ingestor.pipeline.parse_batch`);
3. dead-letter the rejected lines and wait for the broker's acknowledgement;
4. write the lake (deduplicated on ``event_id``, fsynced) and the online store (idempotent);
   by default 3 and 4 run on threads of their own, overlapping the next batch's 1-2
   (``pipelined_store``);
5. commit the batch's offsets (once 3 and 4 are done).

A replay after a crash between 3 and 5 is absorbed by the DLQ's held-offsets set and the lake's
key dedupe. On a rebalance the uncommitted buffer is dropped (its partitions restart from the
committed offsets, here or on another instance). SIGTERM/SIGINT: finish the batch, commit, exit 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ingestor import metrics
from ingestor.consumers import (
    BrokerUnavailable,
    CommitRejected,
    ConsumerSettings,
    GroupConsumer,
    Polled,
    open_consumer,
)
from ingestor.dlq import DeadLetters
from ingestor.enrich import Enricher
from ingestor.lake import LakeWriter, maintain, recover
from ingestor.pipeline import KIND_OF_TABLE, parse_batch, pseudonymise
from ingestor.retention import RetentionPolicy, apply_retention
from movierec_core.erasure import ErasedUsers, drop_erased
from movierec_core.events import ParserSettings
from movierec_core.kafka_security import kafka_python_options, librdkafka_options
from movierec_core.lake import WATCH_MINUTES
from movierec_core.online_store import OnlineStore, open_store
from movierec_core.pseudonym import KeyRing, check_lake_key

log = logging.getLogger("ingestor")


_BRIEF_POLL_S = 0.01


class Ingestor:
    """``run()`` consumes until :meth:`stop` (or SIGTERM via :func:`main`)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.icfg = cfg.ingestor
        self.topic = cfg.kafka.topic
        self.dlq_topic = cfg.kafka.dlq_topic or f"{cfg.kafka.topic}.dlq"
        self.instance = f"{socket.gethostname()}-{os.getpid()}"
        self.settings = ParserSettings(rating_max=int(cfg.data.rating_scale_max))
        self.lake = LakeWriter(cfg.data.lake_root)
        self.erased = ErasedUsers(cfg.data.lake_root)
        # pseudonymous ids (movierec_core/pseudonym.py): what the lake and the store hold
        self.ring = KeyRing.from_config(cfg.data)
        self.pseudonyms = self.ring.current
        self.retention = RetentionPolicy.from_config(cfg.ingestor)
        # transport/authentication (kafka.security_protocol ...): checked here, at start-up
        self.security = kafka_python_options(cfg.kafka)
        self.rdkafka_security = librdkafka_options(cfg.kafka)
        self.store: OnlineStore | None = None
        self.enricher: Enricher | None = None
        self.consumer: GroupConsumer | None = None
        self.dead_letters: DeadLetters | None = None
        self._stop = threading.Event()
        self._buffer = Polled()
        self._next_offsets: dict[int, int] = {}  # partition -> next offset committed here
        self._dirty_days: set = set()
        self._last_maintenance = time.monotonic()
        self.batches = 0
        self.records = 0
        self.last_batch_end = 0.0
        self._subscribed_at = time.monotonic()
        self._broker_down_since = 0.0
        self.first_record_at = 0.0  # wall clock, for benchmarks across worker processes
        self._pending: tuple[tuple[Future, ...], dict[int, int], float | None] | None = None
        # the lake files, the online-store upserts and the dead letters of a batch
        self._store_pool = (ThreadPoolExecutor(3, thread_name_prefix="lake-and-store")
                            if cfg.ingestor.pipelined_store else None)
        self.last_commit_at = 0.0

    # ----------------------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        self._stop.set()

    def _backoff_sleep(self, attempt: int) -> None:
        delay = min(self.icfg.retry_backoff_s * (2 ** attempt), self.icfg.retry_backoff_max_s)
        self._stop.wait(delay)

    def _connect(self) -> None:
        """Create the clients, retrying with backoff while the broker is unavailable."""
        bootstrap = self.cfg.kafka.bootstrap
        attempt = 0
        while not self._stop.is_set():
            try:
                self._ensure_dlq_topic(bootstrap)
                producer = KafkaProducer(
                    bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                    max_request_size=int(self.icfg.dlq_max_request_bytes),
                    client_id=f"{self.cfg.kafka.client_id}-ingestor-dlq", **self.security)
                reader = KafkaConsumer(
                    bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                    check_crcs=bool(self.icfg.check_crcs),
                    client_id=f"{self.cfg.kafka.client_id}-ingestor-dlq-reader",
                    **self.security)
                self.dead_letters = DeadLetters(producer, reader, self.topic, self.dlq_topic,
                                                self.instance)
                self.dead_letters.refresh()
                consumer = open_consumer(str(self.icfg.consumer), ConsumerSettings(
                    bootstrap=bootstrap, topic=self.topic, group_id=self.cfg.kafka.group_id,
                    client_id=f"{self.cfg.kafka.client_id}-ingestor",
                    auto_offset_reset=self.icfg.auto_offset_reset,
                    fetch_max_bytes=int(self.icfg.fetch_max_bytes),
                    max_partition_fetch_bytes=int(self.icfg.max_partition_fetch_bytes),
                    max_poll_records=int(self.icfg.batch_max_records),
                    check_crcs=bool(self.icfg.check_crcs),
                    session_timeout_ms=int(self.icfg.session_timeout_ms),
                    retry_backoff_max_s=float(self.icfg.retry_backoff_max_s),
                    security=self.security, rdkafka_security=self.rdkafka_security),
                    self._on_revoked, self._on_assigned)
                self._subscribed_at = time.monotonic()
                self.consumer = consumer
                log.info("connected to Kafka at %s (%s consumer): topic %s, group %s, dead "
                         "letters to %s", bootstrap, self.icfg.consumer, self.topic,
                         self.cfg.kafka.group_id, self.dlq_topic)
                return
            except (KafkaError, BrokerUnavailable, TimeoutError, OSError) as exc:
                delay = min(self.icfg.retry_backoff_s * (2 ** attempt), self.icfg.retry_backoff_max_s)
                log.warning("Kafka broker at %s unavailable (%s); retrying in %.1fs",
                            bootstrap, exc, delay)
                self._close_clients()
                self._backoff_sleep(attempt)
                attempt += 1

    def _ensure_dlq_topic(self, bootstrap: str) -> None:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap,
                                 bootstrap_timeout_ms=int(self.icfg.connect_timeout_s * 1000),
                                 client_id=f"{self.cfg.kafka.client_id}-ingestor-admin",
                                 **self.security)
        try:
            if self.dlq_topic not in set(admin.list_topics()):
                days = int(self.icfg.dlq_retention_days)
                configs = {"retention.ms": str(days * 86_400_000)} if days > 0 else {}
                admin.create_topics([NewTopic(self.dlq_topic, int(self.cfg.kafka.partitions), 1,
                                              topic_configs=configs)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def _close_clients(self) -> None:
        for client in (self.consumer,
                       self.dead_letters and self.dead_letters.reader,
                       self.dead_letters and self.dead_letters.producer):
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing after a failure
                    pass
        self.consumer = None
        self.dead_letters = None

    def run(self) -> int:
        recovered = recover(self.cfg.data.lake_root)
        check_lake_key(self.cfg.data.lake_root, self.ring)
        if recovered:
            log.warning("finished %d interrupted lake file replacements", recovered)
        if self.icfg.online_store:
            self.store = open_store(self.cfg.data,
                                    ttl_s=int(self.icfg.online_store_retention_days) * 86400)
        if self.icfg.enrichment:
            self.enricher = Enricher(
                self.cfg.data.lake_root, self.cfg.metadata_api.url,
                bulk_size=int(self.cfg.metadata_api.bulk_size),
                timeout_s=float(self.cfg.metadata_api.timeout_s),
                interval_s=float(self.icfg.enrichment_interval_s),
                max_backoff_s=float(self.icfg.enrichment_max_backoff_s),
                pseudonyms=self.pseudonyms).start()
        threading.Thread(target=self._watch_broker, name="broker-probe", daemon=True).start()
        self._connect()
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                got = self._fill_buffer()
                if self._buffer:
                    self._process_buffer()
                else:
                    self._finish_pending()  # nothing new: no reason to hold the commit
                if got:
                    idle_since = time.monotonic()
                self._maybe_maintain()
                self._check_assignment()
                if (self.icfg.exit_when_idle_s and self._drained()
                        and time.monotonic() - idle_since >= self.icfg.exit_when_idle_s):
                    log.info("all assigned partitions drained; exiting (exit_when_idle_s)")
                    break
            if self._buffer:
                self._process_buffer(shutting_down=True)
            self._finish_pending(shutting_down=True)
        finally:
            if self._store_pool is not None:
                self._store_pool.shutdown(wait=True)
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        try:
            maintain(self.cfg.data.lake_root, float(self.icfg.session_gap_s),
                     int(self.icfg.compact_min_files), days=self._dirty_days or set())
        except Exception:  # noqa: BLE001 - maintenance can run again later (`compact`)
            log.exception("lake maintenance at shutdown failed")
        if self.enricher is not None:
            self.enricher.stop()
        self._close_clients()
        if self.store is not None:
            self.store.close()
        log.info("ingestor stopped after %d batches", self.batches)
        log.info("ingest summary %s", json.dumps({
            "records": self.records, "batches": self.batches,
            "first_record_at": self.first_record_at, "last_commit_at": self.last_commit_at}))

    # ------------------------------------------------------------------------------- batches
    def _fill_buffer(self) -> int:
        """Poll until a batch is full (``batch_max_records`` records, or ``batch_max_bytes`` of
        values: the poll that crosses it is kept whole) or its time is up; returns records
        received."""
        assert self.consumer is not None
        deadline = time.monotonic() + float(self.icfg.batch_max_wait_s)
        limit = int(self.icfg.batch_max_records)
        max_bytes = int(self.icfg.batch_max_bytes)
        received = 0
        while (len(self._buffer) < limit and self._buffer.nbytes < max_bytes
               and not self._stop.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # while the pipelined batch is being written, a consumer whose group protocol runs
            # on threads of its own (librdkafka) polls briefly, so that the batch is committed
            # as soon as it is written, also when the stream has gone quiet; kafka-python
            # runs the group protocol inside poll() and keeps the full timeout
            waiting = self._pending is not None
            brief = waiting and getattr(self.consumer, "background_group", False)
            timeout = min(remaining, self.icfg.poll_timeout_ms / 1000,
                          _BRIEF_POLL_S if brief else remaining)
            try:
                polled = self.consumer.poll(timeout, limit - len(self._buffer))
            except BrokerUnavailable as exc:
                log.warning("poll failed (%s); the consumer reconnects by itself", exc)
                self._stop.wait(min(1.0, self.icfg.retry_backoff_max_s))
                continue
            if polled and not self.first_record_at:
                self.first_record_at = time.time()
            if waiting and all(f.done() for f in self._pending[0]):
                # the previous batch is written: commit it now, not after this batch (an idle
                # stream would otherwise hold its offsets for batch_max_wait_s)
                self._finish_pending()
            self._buffer.extend(polled)
            received += len(polled)
            if not polled and self._buffer and (not brief or self._pending is None):
                # nothing more right now (a brief poll counts once the previous batch is
                # committed: a stream's last records are not held for one more poll)
                break  # write what we have
        return received

    def _process_buffer(self, shutting_down: bool = False) -> None:
        start = time.perf_counter()
        batch, self._buffer = self._buffer, Polled()
        values = batch.values
        commit = batch.next_offsets()
        t_parse = time.perf_counter()
        parsed = parse_batch(values, batch.partitions, batch.offsets, batch.timestamps_ms,
                             self.settings)
        ids = parsed.user_ids  # as they came: the metadata API knows users by these
        if self.pseudonyms is not None:
            parsed = pseudonymise(parsed, self.pseudonyms)
        erased = self._erased_among(ids)
        if erased:  # late events of erased users never reach the lake or the online store
            parsed.tables = {name: drop_erased(table, erased)
                             for name, table in parsed.tables.items()}
            parsed.events = [e for e in parsed.events if e.user_id not in erased]
            pid = self.pseudonyms.pid if self.pseudonyms is not None else int
            ids = {u for u in ids if pid(u) not in erased}
        t_dlq = time.perf_counter()

        give_up = time.monotonic() + self.icfg.shutdown_commit_timeout_s if shutting_down else None
        pipelined = self._store_pool is not None and not shutting_down
        dead = parsed.rejected if self.dead_letters is not None else []
        if dead:
            for item in dead:
                metrics.DLQ.labels(str(item.rejection.reason)).inc()
            metrics.EVENTS.labels("unknown", "invalid").inc(len(dead))
            if not pipelined:
                self._send_dead_letters(dead, give_up)

        t_lake = time.perf_counter()
        if pipelined:
            # pipelined: this batch's lake files, online-store upserts and dead letters are
            # written on threads of their own, side by side (Parquet, fsync, numpy, sqlite and
            # the wait for the DLQ's acknowledgements release the GIL), while the next batch is
            # polled and parsed; the previous batch's have finished and its offsets are
            # committed first. A batch's offsets are committed once all three are done.
            self._finish_pending()
            futures = [self._store_pool.submit(self._write_lake, parsed.tables)]
            if self.store is not None:
                futures.append(self._store_pool.submit(self._write_store, parsed.tables,
                                                       parsed.events))
            if dead:
                futures.append(self._store_pool.submit(self._send_dead_letters, dead, give_up))
            self._pending = (tuple(futures), commit, give_up)
        else:
            self._finish_pending()
            self._dirty_days.update(self._write_lake(parsed.tables))
            self._write_store(parsed.tables, parsed.events)
        t_store = time.perf_counter()
        if self.enricher is not None:
            self.enricher.offer(ids, parsed.movie_ids)

        t_commit = time.perf_counter()
        if self._pending is None or self._pending[1] is not commit:
            self._commit(commit, give_up)
            self.last_commit_at = time.time()
        self.batches += 1
        self.records += len(values)
        elapsed = time.perf_counter() - start
        metrics.BATCH_DURATION.observe(elapsed)
        self.last_batch_end = time.monotonic()
        log.debug("batch %d: %d records, %d rejected, %.3fs (collect %.3f parse %.3f dlq %.3f "
                  "write %.3f enrich %.3f commit %.3f)", self.batches, len(values),
                  len(parsed.rejected), elapsed, t_parse - start, t_dlq - t_parse,
                  t_lake - t_dlq, t_store - t_lake, t_commit - t_store,
                  time.perf_counter() - t_commit)
        self._update_lag()

    def _write_lake(self, tables: dict) -> set:
        """A batch's lake files (deduplicated, fsynced); returns the days whose watch minutes
        it added (their sessions are rebuilt)."""
        days: set = set()
        started = time.perf_counter()
        for table_name, table in tables.items():
            result = self.lake.write_dated(table_name, table)
            kind = str(KIND_OF_TABLE[table_name])
            metrics.EVENTS.labels(kind, "accepted").inc(result.rows)
            metrics.EVENTS.labels(kind, "duplicate").inc(result.duplicates)
            metrics.LAKE_BYTES.inc(result.bytes)
            if table_name == WATCH_MINUTES and result.rows:
                days.update(table.column("time").cast("date32").unique().to_pylist())
        log.debug("lake files written in %.3fs", time.perf_counter() - started)
        return days

    def _send_dead_letters(self, rejected: list, give_up: float | None) -> set:
        """A batch's rejected lines to the DLQ, acknowledged by the broker (retried while it is
        away) before the batch's offsets can be committed; no days to report."""
        assert self.dead_letters is not None
        started = time.perf_counter()
        self.dead_letters.send(rejected, self.icfg.retry_backoff_s,
                               self.icfg.retry_backoff_max_s, give_up)
        log.debug("%d dead letters acknowledged in %.3fs", len(rejected),
                  time.perf_counter() - started)
        return set()

    def _write_store(self, tables: dict, events: list) -> set:
        """A batch's online-store upserts (idempotent); no days to report."""
        if self.store is not None:
            started = time.perf_counter()
            self.store.apply_tables(tables.get(WATCH_MINUTES), events)
            log.debug("online store upserted in %.3fs (write lock after %.3fs)",
                      time.perf_counter() - started, getattr(self.store, "last_lock_wait_s", 0.0))
        return set()

    def _erased_among(self, ids: set[int]) -> frozenset[int]:
        """The erasure ledger's ids in the lake's id space: its entries under the current key
        (or raw), plus those of ``ids`` (a batch's users, as they came) that entries under an
        older key of the ring name (entries a key rotation could not map)."""
        by_key = self.erased.by_key()
        current = self.ring.current_id
        erased = by_key.get(current, frozenset())
        older = [(k, v) for k, v in by_key.items() if k != current and (k is None or
                                                                        k in self.ring.key_ids)]
        if not older or self.pseudonyms is None:
            return erased
        matched = set()
        for key_id, pids in older:
            pid = self.ring.get(key_id).pid if key_id is not None else int
            matched.update(u for u in ids if pid(u) in pids)
        return erased | frozenset(self.pseudonyms.pids(matched))

    def _finish_pending(self, shutting_down: bool = False) -> None:
        """Wait for the pipelined batch's lake files and online-store upserts, then commit its
        offsets (at shutdown giving up after ``shutdown_commit_timeout_s``, like an in-line
        batch)."""
        if self._pending is None:
            return
        futures, commit, give_up = self._pending
        if shutting_down:
            give_up = time.monotonic() + self.icfg.shutdown_commit_timeout_s
        self._pending = None
        for future in futures:  # a failure propagates: the batch is replayed after a restart
            self._dirty_days.update(future.result())
        self._commit(commit, give_up)
        self.last_commit_at = time.time()

    def _commit(self, offsets: dict[int, int], give_up_at: float | None) -> None:
        assert self.consumer is not None
        attempt = 0
        while True:
            try:
                self.consumer.commit(offsets)
                self._next_offsets.update(offsets)
                if self.dead_letters is not None:
                    self.dead_letters.forget_below(offsets)
                return
            except CommitRejected as exc:
                log.warning("offset commit rejected (%s): the group rebalanced; the batch is "
                            "replayed by the partition's new owner and deduplicated", exc)
                return
            except BrokerUnavailable as exc:
                if give_up_at is not None and time.monotonic() > give_up_at:
                    log.warning("giving up committing at shutdown (%s); the batch is in the "
                                "lake and will be deduplicated when replayed", exc)
                    return
                delay = min(self.icfg.retry_backoff_s * (2 ** attempt), self.icfg.retry_backoff_max_s)
                log.warning("Kafka broker unavailable: offset commit failed (%s); retrying in "
                            "%.1fs", exc, delay)
                time.sleep(delay)
                attempt += 1

    # ------------------------------------------------------------------------------ rebalance
    # kafka-python 3 runs these on its I/O thread, librdkafka's client inside poll(): they note
    # the change (and wait for the pipelined batch's dead letters). Nothing needs dropping: a
    # batch commits only offsets of records it wrote itself (max offset + 1 per partition),
    # records fetched twice across a rebalance are deduplicated (lake: event_id, DLQ: source
    # partition/offset), and a commit after losing a partition claims no more than what this
    # instance wrote.
    def _on_revoked(self, revoked: list[int]) -> None:
        log.info("partitions revoked: %s", revoked)
        for partition in revoked:
            self._next_offsets.pop(partition, None)
        pending = self._pending
        if revoked and pending is not None:
            # the batch handed to the pipeline sends its dead letters on a thread of its own:
            # they reach the DLQ before the partitions go, since their next owner reads the
            # DLQ's tail once and sends only the dead letters it does not find there (without
            # this wait, two instances sharing a topic wrote 43 of 190 dead letters twice)
            _, late = wait(pending[0], timeout=float(self.icfg.shutdown_commit_timeout_s))
            if late:
                log.warning("the pipelined batch was not written within %.0fs of a rebalance; "
                            "its dead letters may be sent again by the partitions' next owner",
                            self.icfg.shutdown_commit_timeout_s)

    def _on_assigned(self, assigned: list[int]) -> None:
        log.info("assigned partitions %s", assigned)
        if self.dead_letters is not None:
            self.dead_letters.stale = True  # re-read the DLQ tail before the next dead letter

    # ------------------------------------------------------------------------------- upkeep
    def _check_assignment(self) -> None:
        """Rejoin when the group left this consumer without partitions for too long (a stalled
        rebalance; with more instances than partitions an idle member is normal)."""
        limit = float(self.icfg.rejoin_after_s)
        if not limit or self.consumer is None or self._broker_down_since:
            return
        if self.consumer.assignment():
            self._subscribed_at = time.monotonic()
            return
        if time.monotonic() - self._subscribed_at > limit:
            log.warning("no partitions assigned for %.0fs; reconnecting to the group", limit)
            self._close_clients()
            self._connect()

    def _watch_broker(self, every_s: float = 2.0) -> None:
        # a thread of its own: during an outage kafka-python's poll() may block for long
        while not self._stop.wait(every_s):
            self._broker_seen(self._probe_broker())

    def _probe_broker(self) -> bool:
        """Can any bootstrap address be reached? (kafka-python reconnects by itself; this only
        makes an outage visible as one clear log line)."""
        for address in str(self.cfg.kafka.bootstrap).split(","):
            host, _, port = address.strip().rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0):
                    return True
            except (OSError, ValueError):
                continue
        return False

    def _broker_seen(self, reachable: bool) -> None:
        if not reachable and not self._broker_down_since:
            self._broker_down_since = time.monotonic()
            log.warning("Kafka broker at %s unavailable; retrying with backoff (up to %.0fs "
                        "between attempts), will resume from the committed offsets",
                        self.cfg.kafka.bootstrap, self.icfg.retry_backoff_max_s)
        elif reachable and self._broker_down_since:
            log.info("Kafka broker at %s reachable again after %.0fs; resuming",
                     self.cfg.kafka.bootstrap, time.monotonic() - self._broker_down_since)
            self._broker_down_since = 0.0

    def _update_lag(self) -> None:
        if self.consumer is None:
            return
        for partition in self.consumer.assignment():
            high = self.consumer.highwater(partition)
            pos = self._next_offsets.get(partition)
            if high is not None and pos is not None:
                metrics.CONSUMER_LAG.labels(str(partition)).set(max(0, high - pos))

    def _drained(self) -> bool:
        if self.consumer is None or self._buffer:
            return False
        assignment = self.consumer.assignment()
        if not assignment:
            return False
        for partition in assignment:
            high = self.consumer.highwater(partition)
            if high is None:
                return False
            pos = self._next_offsets.get(partition)
            if pos is None:
                try:
                    pos = self.consumer.position(partition)
                except Exception:  # noqa: BLE001
                    return False
            if pos is None or pos < high:
                return False
        return True

    def _maybe_maintain(self) -> None:
        interval = float(self.icfg.maintenance_interval_s)
        if not interval or time.monotonic() - self._last_maintenance < interval:
            return
        self._last_maintenance = time.monotonic()
        self._finish_pending()  # the pipelined batch's files are in before the lake is changed
        days, self._dirty_days = self._dirty_days, set()
        try:
            result = maintain(self.cfg.data.lake_root, float(self.icfg.session_gap_s),
                              int(self.icfg.compact_min_files), days=days)
            log.info("lake maintenance: %s", result)
            if self.retention.active:
                apply_retention(self.retention, self.cfg.data.lake_root, self.store,
                                self.cfg.data.registry_root)
        except Exception:  # noqa: BLE001 - retried next interval
            self._dirty_days |= days
            log.exception("lake maintenance failed")


def install_signal_handlers(ingestor: Ingestor) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.info("received %s: finishing the batch, committing, exiting",
                 signal.Signals(signum).name)
        ingestor.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
