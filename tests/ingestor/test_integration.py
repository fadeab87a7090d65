"""The ingestor against a real broker and the simulator's stream (invalid lines, duplicates)."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingestor.consumers import KINDS
from ingestor.dlq import origin_of
from movierec_core.config import DataConfig
from movierec_core.events import Rating, Reason, WatchMinute, parse
from movierec_core.lake import WATCH_SESSIONS, table_dir
from movierec_core.online_store import open_store
from movierec_core.snapshot import data_files
from tests.ingestor.helpers import (
    create_topic,
    dlq_count,
    dlq_records,
    expected_counts,
    lake_counts,
    lake_rows,
    produce,
    simulator_stream,
    start_ingestor,
    wait_until,
)

pytestmark = pytest.mark.integration


def assert_exactly_once(bootstrap: str, topic: str, workdir: Path, ledger) -> None:
    rows = lake_rows(workdir / "lake")
    assert {t: len(ids) for t, ids in rows.items()} == expected_counts(ledger)
    for table, ids in rows.items():
        assert len(set(ids)) == len(ids), f"duplicates in {table}"
    count = dlq_count(bootstrap, f"{topic}.dlq")
    if count != ledger.invalid_total:  # say which lines came twice, when, and what the log said
        records = dlq_records(bootstrap, f"{topic}.dlq")
        by_origin = Counter(origin_of(rec.headers) for rec in records)
        twice = sorted(o for o, n in by_origin.items() if n > 1)
        log = "".join(line for f in workdir.glob("*.log") for line in f.read_text().splitlines(True)
                      if any(w in line for w in ("dead", "unavailable", "reachable", "assigned")))
        raise AssertionError(f"DLQ holds {count} records for {ledger.invalid_total} invalid lines; "
                             f"{len(twice)} origins twice, first {twice[:5]}\n{log[-4000:]}")


def done(bootstrap: str, topic: str, workdir: Path, ledger) -> bool:
    return (lake_counts(workdir / "lake") == expected_counts(ledger)
            and dlq_count(bootstrap, f"{topic}.dlq") >= ledger.invalid_total)


@pytest.mark.parametrize("consumer", KINDS)
def test_stream_lands_once_in_lake_dlq_and_online_store(kafka_broker, tmp_path, consumer) -> None:
    bootstrap, topic = kafka_broker.bootstrap, f"it-basic-{consumer}"
    lines, ledger = simulator_stream(20_000, seed=1)
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, lines)
    proc = start_ingestor(bootstrap, topic, tmp_path, "ingestor.exit_when_idle_s=2",
                          f"ingestor.consumer={consumer}")
    assert proc.wait(240) == 0, (tmp_path / "ingestor.log").read_text()[-3000:]
    assert_exactly_once(bootstrap, topic, tmp_path, ledger)

    # dead letters carry the original bytes, a reason code and their origin
    records = dlq_records(bootstrap, f"{topic}.dlq")
    assert len(records) == ledger.invalid_total
    sent = set(lines)
    for rec in records:
        headers = {k: v.decode() for k, v in rec.headers}
        assert rec.value in sent
        assert Reason(headers["reason"]) is not Reason.DUPLICATE
        assert int(headers["source_partition"]) in range(4)
        assert int(headers["source_offset"]) >= 0
        assert headers["source_topic"] == topic and headers["dead_lettered_at"]
    # derived sessions and the online store are there
    sessions = [pq.ParquetFile(p).read() for part in table_dir(tmp_path / "lake", WATCH_SESSIONS)
                .glob("event_date=*") for p in data_files(part)]
    assert sum(s.num_rows for s in sessions) > 0
    # the online store holds, for every user, exactly what the valid lines say
    expected = expected_online_state(lines)
    assert len(expected) > 100
    store = open_store(DataConfig(online_store_path=str(tmp_path / "online.sqlite")))
    try:
        got = {user: {i.movie_id: (i.minutes, i.max_minute, i.stars)
                      for i in store.interactions(user, limit=10_000)} for user in expected}
    finally:
        store.close()
    assert got == expected


def expected_online_state(lines: list[bytes]) -> dict[int, dict[str, tuple]]:
    """user -> movie -> (distinct minutes watched, highest minute or -1, latest stars)."""
    minutes: dict[tuple[int, str], set[int]] = {}
    ratings: dict[tuple[int, str], tuple] = {}
    for line in lines:
        event = parse(line)
        if isinstance(event, WatchMinute):
            minutes.setdefault((event.user_id, event.movie_id), set()).add(event.minute)
        elif isinstance(event, Rating):
            key = (event.user_id, event.movie_id)
            ratings[key] = max(ratings.get(key, (event.time, event.stars)), (event.time, event.stars))
    out: dict[int, dict[str, tuple]] = {}
    for key in minutes.keys() | ratings.keys():
        seen = minutes.get(key, set())
        stars = ratings[key][1] if key in ratings else None
        out.setdefault(key[0], {})[key[1]] = (len(seen), max(seen, default=-1), stars)
    return out


@pytest.mark.parametrize("consumer", KINDS)
def test_sigkill_three_times_mid_run_loses_and_duplicates_nothing(kafka_broker, tmp_path,
                                                                  consumer) -> None:
    bootstrap, topic = kafka_broker.bootstrap, f"it-sigkill-{consumer}"
    lines, ledger = simulator_stream(30_000, seed=2)
    create_topic(bootstrap, topic)
    rng = random.Random(7)

    def trickle() -> None:  # the stream keeps arriving while the ingestor dies and restarts
        for i in range(0, len(lines), 2000):
            produce(bootstrap, topic, lines[i:i + 2000])
            time.sleep(0.4)

    producer = threading.Thread(target=trickle)
    producer.start()
    for attempt in range(3):
        proc = start_ingestor(bootstrap, topic, tmp_path, "ingestor.batch_max_records=2000",
                              f"ingestor.consumer={consumer}", log_name=f"ingestor-{attempt}.log")
        # kill once it has written something (or at a random moment after start)
        before = sum(lake_counts(tmp_path / "lake").values())
        wait_until(lambda b=before, p=proc: sum(lake_counts(tmp_path / "lake").values()) > b
                   or p.poll() is not None, every_s=0.1)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    producer.join()
    proc = start_ingestor(bootstrap, topic, tmp_path, f"ingestor.consumer={consumer}",
                          log_name="ingestor-final.log")
    wait_until(lambda: done(bootstrap, topic, tmp_path, ledger))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert_exactly_once(bootstrap, topic, tmp_path, ledger)


def test_broker_unavailable_at_start_and_restarted_mid_run(tmp_path) -> None:
    from devstack.kafka import KafkaBroker

    broker = KafkaBroker(data_dir=tmp_path / "kafka")  # not started yet
    bootstrap, topic = broker.bootstrap, "it-outage"
    lines, ledger = simulator_stream(20_000, seed=3)
    half = len(lines) // 2
    log = tmp_path / "ingestor.log"
    proc = start_ingestor(bootstrap, topic, tmp_path)
    try:
        wait_until(lambda: "unavailable" in log.read_text())  # retrying, not crashing
        broker.start()
        create_topic(bootstrap, topic)
        produce(bootstrap, topic, lines[:half])
        wait_until(lambda: sum(lake_counts(tmp_path / "lake").values()) > 0)
        broker.stop()
        time.sleep(4)  # longer than the ingestor's 2 s broker probe
        broker.start()
        produce(bootstrap, topic, lines[half:])
        wait_until(lambda: done(bootstrap, topic, tmp_path, ledger))
        assert proc.poll() is None, "the ingestor must survive a broker outage"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert_exactly_once(bootstrap, topic, tmp_path, ledger)
        text = log.read_text()
        assert text.count("unavailable; retrying with backoff") >= 2, "start + mid-run outage"
        assert text.count("reachable again") >= 2
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()


def test_two_instances_share_the_partitions(kafka_broker, tmp_path) -> None:
    bootstrap, topic = kafka_broker.bootstrap, "it-pair"
    lines, ledger = simulator_stream(20_000, seed=4)
    create_topic(bootstrap, topic)
    first = start_ingestor(bootstrap, topic, tmp_path, log_name="a.log")
    second = start_ingestor(bootstrap, topic, tmp_path, log_name="b.log")
    produce(bootstrap, topic, lines)
    wait_until(lambda: done(bootstrap, topic, tmp_path, ledger))
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0 and second.wait(60) == 0
    assert_exactly_once(bootstrap, topic, tmp_path, ledger)
