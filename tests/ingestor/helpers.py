"""Helpers of the ingestor integration tests: streams, producing, running the ingestor, counting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow.parquet as pq
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from movierec_core.lake import EVENT_TABLES, table_dir
from movierec_core.snapshot import data_files

REPO_ROOT = Path(__file__).resolve().parents[2]
KIND_TABLE = {"watch": "watch_minutes", "rate": "ratings", "account": "account_creations",
              "recommend": "recommendation_requests"}


def simulator_stream(n_lines: int, seed: int = 1, invalid_rate: float = 0.01,
                     duplicate_rate: float = 0.01):
    """The simulator's deterministic stream (lines, ledger) with invalid lines and duplicates."""
    from simulator.stream import generate_lines
    from simulator.world import World, WorldConfig

    world = World.build(WorldConfig(n_users=2000, n_movies=3000))
    return generate_lines(world, n_lines, seed=seed, invalid_rate=invalid_rate,
                          duplicate_rate=duplicate_rate)


def create_topic(bootstrap: str, topic: str, partitions: int = 4) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:  # auto-created by a consumer's metadata request
        pass
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, lines: Sequence[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024,
                             max_request_size=4 * 1024 * 1024, acks="all")
    for line in lines:
        producer.send(topic, line)
    producer.flush()
    producer.close()


def dlq_count(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


def dlq_records(bootstrap: str, topic: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out = list(consumer)
    consumer.close()
    return out


def lake_rows(lake_root: Path) -> dict[str, list[int]]:
    """event_ids per event table, read from the visible files (retried across compactions)."""
    for _ in range(20):
        try:
            out = {}
            for table in EVENT_TABLES:
                ids: list[int] = []
                root = table_dir(lake_root, table)
                for part in sorted(root.glob("event_date=*")) if root.is_dir() else []:
                    for path in data_files(part):
                        ids += pq.ParquetFile(path).read(columns=["event_id"]).column(
                            "event_id").to_pylist()
                out[table] = ids
            return out
        except (FileNotFoundError, OSError):
            time.sleep(0.2)
    raise RuntimeError("lake kept changing under the reader")


def lake_counts(lake_root: Path) -> dict[str, int]:
    return {table: len(ids) for table, ids in lake_rows(lake_root).items()}


def expected_counts(ledger) -> dict[str, int]:
    counts = Counter({table: 0 for table in EVENT_TABLES})
    for kind, n in ledger.valid.items():
        counts[KIND_TABLE[kind]] += n
    return dict(counts)


def start_ingestor(bootstrap: str, topic: str, workdir: Path, *extra: str,
                   log_name: str = "ingestor.log") -> subprocess.Popen:
    overrides = [f"kafka.bootstrap={bootstrap}", f"kafka.topic={topic}",
                 f"kafka.group_id=it-{topic}", f"data.lake_root={workdir / 'lake'}",
                 f"data.online_store_path={workdir / 'online.sqlite'}",
                 "ingestor.metrics_port=0", "ingestor.enrichment=false",
                 "ingestor.batch_max_records=5000", "ingestor.retry_backoff_max_s=2",
                 "ingestor.session_timeout_ms=6000",
                 *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    log = open(workdir / log_name, "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([sys.executable, "-m", "ingestor", *overrides], cwd=REPO_ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def wait_until(predicate: Callable[[], bool], timeout_s: float = 180, every_s: float = 0.5) -> None:
    """Poll ``predicate`` until true; a generous deadline guards against hangs only."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(every_s)
