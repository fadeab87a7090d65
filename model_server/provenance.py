"""Provenance: one record per answered request, written off the hot path.

A request handler only appends a small tuple to a deque (``log``); a daemon thread wakes every
``flush_interval_s``, turns what accumulated into JSON lines and appends them to the local file
(``serving.provenance_log``) and, optionally, sends them to a Kafka topic. ``deque.append`` takes
no lock and wakes no thread: a ``queue.Queue`` notifies its consumer on every put, and that
GIL hand-off cost more than ranking a request (profiled: ~200 us per request under load). A
full buffer drops the record and counts it rather than slowing requests down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from model_server.metrics import PROVENANCE_DROPPED
from movierec_core.rotating import RotatingFile

log = logging.getLogger(__name__)

Sink = Callable[[list[bytes]], None]


class ProvenanceLog:
    """Bounded queue + background writer of provenance records (JSON lines)."""

    def __init__(self, path: str | Path | None, *, kafka_sink: Sink | None = None,
                 max_queue: int = 100_000, flush_interval_s: float = 0.2,
                 max_bytes: int = 0, backups: int = 2, pseudonyms=None) -> None:
        """``pseudonyms``: records name users by their pseudonyms
        (:class:`~movierec_core.pseudonym.Pseudonymizer`, the current key), not their ids.
        ``max_bytes`` > 0: the file rotates (:class:`~movierec_core.rotating.RotatingFile`),
        so a pod's size-limited scratch volume never fills with it; the Kafka topic, when given,
        keeps every record."""
        self._kafka_sink = kafka_sink
        self._pid = pseudonyms.pid if pseudonyms is not None else None
        self._sink_warned = -1e9
        self._pending: deque[tuple] = deque()
        self._max_pending = max_queue
        self._flush_interval_s = flush_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="provenance-writer", daemon=True)
        self._file = RotatingFile(path, max_bytes, backups) if path else None
        self._thread.start()

    def log(self, request_id: str, user_id: int, items: Sequence[str], model: dict[str, str],
            endpoint: str, source: str) -> None:
        """Queue a record; never blocks. ``model`` is the serving model's provenance dict."""
        if len(self._pending) >= self._max_pending:
            PROVENANCE_DROPPED.inc()
            return
        if self._pid is not None:
            user_id = self._pid(user_id)
        self._pending.append((time.time(), request_id, user_id, items, model, endpoint, source))

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self._flush_interval_s)
            pending = self._pending
            while pending:
                batch = []
                while pending and len(batch) < 5000:
                    batch.append(pending.popleft())
                self._write([_encode(*record) for record in batch])
            if stopping:
                return

    def _write(self, lines: list[bytes]) -> None:
        if self._file is not None:
            try:
                self._file.write(b"".join(lines))
            except OSError:
                log.exception("provenance file write failed")
                PROVENANCE_DROPPED.inc(len(lines))
        if self._kafka_sink is not None:
            try:
                self._kafka_sink(lines)
            except SinkUnavailable as exc:  # retried by the sink: one line per 30 s
                PROVENANCE_DROPPED.inc(len(lines))
                now = time.monotonic()
                if now - self._sink_warned >= 30.0:
                    self._sink_warned = now
                    log.warning("provenance records not sent to Kafka (%s); the file keeps "
                                "them", exc)
            except Exception:  # a broker outage must not stop serving
                log.exception("provenance Kafka send failed")
                PROVENANCE_DROPPED.inc(len(lines))

    def close(self, timeout_s: float = 5.0) -> None:
        """Drain the queue and close the file."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._file is not None:
            self._file.close()
        close = getattr(self._kafka_sink, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing the provenance Kafka sink failed")


def _encode(at: float, request_id: str, user_id: int, items: Sequence[str], model: dict[str, str],
            endpoint: str, source: str) -> bytes:
    record = {
        "time": round(at, 6),
        "request_id": request_id,
        "user_id": user_id,
        "items": list(items),
        "endpoint": endpoint,
        "source": source,
        **model,
    }
    return orjson.dumps(record) + b"\n"


class SinkUnavailable(Exception):
    """The sink cannot take records now (its broker is unreachable); it retries by itself."""


class KafkaSink:
    """Sends each JSON line as one message to a topic (kafka-python producer).

    The producer is created on the first batch, on the writer thread, not at start-up: a model
    server whose Kafka is down (a restart of both at once) starts and serves, its provenance
    records go to the file and are counted as dropped for Kafka, and the connection is retried
    every ``retry_s``."""

    def __init__(self, bootstrap: str, topic: str,
                 client_id: str = "movierec-model-server", retry_s: float = 10.0,
                 connect_timeout_s: float = 10.0, security: dict | None = None) -> None:
        self.topic = topic
        self._bootstrap, self._client_id, self._retry_s = bootstrap, client_id, retry_s
        self._connect_timeout_ms = int(connect_timeout_s * 1000)
        self._security = dict(security or {})
        self.producer = None
        self._next_attempt = 0.0

    def _connect(self) -> None:
        from kafka import KafkaProducer

        now = time.monotonic()
        if now < self._next_attempt:
            raise SinkUnavailable(f"Kafka at {self._bootstrap} unavailable; next attempt in "
                                  f"{self._next_attempt - now:.0f}s")
        try:
            self.producer = KafkaProducer(bootstrap_servers=self._bootstrap,
                                          client_id=self._client_id, linger_ms=50, acks=1,
                                          bootstrap_timeout_ms=self._connect_timeout_ms,
                                          **self._security)
        except Exception as exc:
            self._next_attempt = now + self._retry_s
            raise SinkUnavailable(f"Kafka at {self._bootstrap} unavailable: {exc}") from exc

    def __call__(self, lines: list[bytes]) -> None:
        if self.producer is None:
            self._connect()
        for line in lines:
            self.producer.send(self.topic, line.rstrip(b"\n"))

    def close(self, timeout_s: float = 5.0) -> None:
        if self.producer is not None:
            self.producer.flush(timeout_s)
            self.producer.close(timeout_s)


def kafka_sink(bootstrap: str, topic: str, security: dict | None = None) -> KafkaSink:
    return KafkaSink(bootstrap, topic, security=security)
