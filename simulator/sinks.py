"""Where produced lines go: Kafka (one line per message, no key), a file (one per line), memory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


class _RateLimit:
    """Caps lines per second (0: unlimited) by sleeping between sends."""

    def __init__(self, max_lines_per_s: float) -> None:
        self.rate = float(max_lines_per_s)
        self.started = time.monotonic()
        self.sent = 0

    def wait(self, n: int) -> None:
        if self.rate <= 0:
            return
        self.sent += n
        delay = self.started + self.sent / self.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class MemorySink:
    """Keeps every line (tests, small runs)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def send(self, lines: list[bytes]) -> None:
        self.lines += lines

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TeeSink:
    """The same lines to several sinks (e.g. Kafka and a MemorySink to score the run)."""

    def __init__(self, *sinks) -> None:
        self.sinks = sinks

    def send(self, lines: list[bytes]) -> None:
        for sink in self.sinks:
            sink.send(lines)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class NullSink:
    def __init__(self) -> None:
        self.lines_sent = 0

    def send(self, lines: list[bytes]) -> None:
        self.lines_sent += len(lines)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class FileSink:
    """Lines to a file, ``\\n``-terminated (no valid or injected line contains a newline)."""

    def __init__(self, path: Path | str, append: bool = False, max_lines_per_s: float = 0.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("ab" if append else "wb", buffering=1 << 20)
        self.limit = _RateLimit(max_lines_per_s)
        self.lines_sent = 0
        self.bytes_sent = 0

    def send(self, lines: list[bytes]) -> None:
        if not lines:
            return
        self.limit.wait(len(lines))
        data = b"\n".join(lines) + b"\n"
        self.file.write(data)
        self.lines_sent += len(lines)
        self.bytes_sent += len(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class KafkaSink:
    """kafka-python producer: big batches, ``linger_ms``, no key, raw bytes per message."""

    def __init__(self, bootstrap: str, topic: str, *, linger_ms: int = 20,
                 batch_size: int = 1_048_576, max_request_size: int = 4_194_304,
                 max_lines_per_s: float = 0.0, client_id: str = "movierec-simulator",
                 partitions: int = 0) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        if partitions > 0:
            ensure_topic(bootstrap, topic, partitions, client_id)
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, client_id=client_id, linger_ms=linger_ms,
            batch_size=batch_size, max_request_size=max_request_size, acks=1,
            # retry until delivery_timeout_ms (120 s): a broker outage delays lines, never drops them
            retries=2**31 - 1)
        self.limit = _RateLimit(max_lines_per_s)
        self.lines_sent = 0
        self.bytes_sent = 0

    def send(self, lines: list[bytes]) -> None:
        send = self.producer.send
        topic = self.topic
        for line in lines:
            send(topic, value=line)
        self.lines_sent += len(lines)
        self.bytes_sent += sum(map(len, lines))
        self.limit.wait(len(lines))

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()


def ensure_topic(bootstrap: str, topic: str, partitions: int, client_id: str = "movierec") -> None:
    """Create the topic if it does not exist yet (the ingestor may create it first)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def make_sink(sink_cfg: Any, kafka_cfg: Any = None):
    """The sink ``simulator.sink`` configures (kafka | file | memory | none)."""
    kind = str(sink_cfg.kind)
    if kind == "kafka":
        return KafkaSink(kafka_cfg.bootstrap, kafka_cfg.topic, linger_ms=int(sink_cfg.linger_ms),
                         batch_size=int(sink_cfg.batch_size),
                         max_request_size=int(sink_cfg.max_request_size),
                         max_lines_per_s=float(sink_cfg.max_lines_per_s),
                         client_id=f"{kafka_cfg.client_id}-simulator",
                         partitions=int(kafka_cfg.partitions))
    if kind == "file":
        return FileSink(sink_cfg.path, max_lines_per_s=float(sink_cfg.max_lines_per_s))
    if kind == "memory":
        return MemorySink()
    if kind == "none":
        return NullSink()
    raise ValueError(f"unknown sink kind {kind!r} (kafka | file | memory | none)")
