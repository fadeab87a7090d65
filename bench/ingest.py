"""Ingest throughput against a real broker: raw kafka-python consumption vs the full ingestor.

    .venv/bin/python bench/ingest.py            # 2,000,000 lines
    .venv/bin/python bench/ingest.py --quick    # 100,000 lines

Starts a Kafka broker (KRaft, free port, temporary data dir), produces the simulator's stream
(1 % duplicate deliveries, 0.2 % invalid lines of every kind except megabyte lines), then in
one run measures

* raw: one kafka-python consumer (same fetch settings as the ingestor) reading every record
  and touching its value;
* ingest: ``python -m ingestor`` (parse, dead letters, Parquet lake with dedupe and fsync,
  SQLite online store, offset commits) with ``ingestor.workers=N`` consumer processes
  (default: the CPU count) and with a single worker.

Rates are records / (last record or commit - first record received), so process start-up and
group joins are excluded on both sides. Writes ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from bench.common import write_result  # noqa: E402
from devstack.kafka import KafkaBroker  # noqa: E402

FETCH = {"fetch_max_bytes": 64 * 1024 * 1024, "max_partition_fetch_bytes": 8 * 1024 * 1024,
         "check_crcs": False}
PARTITIONS = 4


def produce_stream(bootstrap: str, topic: str, n_lines: int) -> dict:
    from movierec_core.invalid import InvalidKind
    from simulator.stream import iter_batches, simulation_config
    from simulator.world import World, WorldConfig

    kinds = [k.value for k in InvalidKind if k is not InvalidKind.HUGE_LINE]
    cfg = simulation_config(seed=11, invalid_rate=0.002, duplicate_rate=0.01,
                            faults__kinds=kinds)
    world = World.build(WorldConfig(n_users=20_000, n_movies=5_000))
    batches, sim = iter_batches(world, cfg=cfg)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20,
                             acks=1)
    sent = 0
    for batch in batches:
        for line in batch:
            producer.send(topic, line)
        sent += len(batch)
        if sent >= n_lines:
            break
    producer.flush()
    producer.close()
    return {"lines": sent, **sim.ledger.to_dict()}


def raw_consume(bootstrap: str, topic: str, n_lines: int) -> tuple[float, float]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="bench-raw",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=50_000, **FETCH)
    got = nbytes = 0
    first = 0.0
    while got < n_lines:
        for records in consumer.poll(timeout_ms=500, max_records=50_000).values():
            if not first:
                first = time.time()
            got += len(records)
            for record in records:
                nbytes += len(record.value)
    last = time.time()
    consumer.close()
    return got / (last - first), last - first


def ingest(bootstrap: str, topic: str, workdir: Path, workers: int, group: str) -> dict:
    overrides = [f"kafka.bootstrap={bootstrap}", f"kafka.topic={topic}", f"kafka.group_id={group}",
                 f"data.lake_root={workdir / 'lake'}",
                 f"data.online_store_path={workdir / 'online.sqlite'}",
                 "ingestor.metrics_port=0", "ingestor.enrichment=false",
                 "ingestor.exit_when_idle_s=2", f"ingestor.workers={workers}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "ingestor.log"
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, "-m", "ingestor", *overrides], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, timeout=3600)
    wall = time.time() - started
    text = log_path.read_text(errors="replace")
    summaries = [json.loads(m) for m in re.findall(r"ingest summary (\{.*\})", text)]
    if proc.returncode != 0 or not any(s["first_record_at"] for s in summaries):
        raise SystemExit(f"ingestor failed ({proc.returncode}):\n{text[-3000:]}")
    records = sum(s["records"] for s in summaries)
    first = min(s["first_record_at"] for s in summaries if s["first_record_at"])
    last = max(s["last_commit_at"] for s in summaries)
    return {"records": records, "seconds": last - first, "events_per_s": records / (last - first),
            "wall_s": wall}


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 lines")
    parser.add_argument("--lines", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    n_lines = args.lines or (100_000 if args.quick else 2_000_000)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker = KafkaBroker(data_dir=workdir / "kafka", heap="1g", num_partitions=PARTITIONS)
    try:
        broker.start()
        bootstrap, topic = broker.bootstrap, "bench-movielog"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        admin.close()
        t = time.time()
        ledger = produce_stream(bootstrap, topic, n_lines)
        n_lines = ledger["lines"]
        print(f"produced {n_lines:,} lines in {time.time() - t:.1f}s "
              f"({ledger['duplicates']:,} duplicates, {ledger['invalid_total']:,} invalid)")
        raw_rate, raw_s = raw_consume(bootstrap, topic, n_lines)
        print(f"raw kafka-python consumption: {raw_rate:,.0f} events/s ({raw_s:.1f}s)")
        full = ingest(bootstrap, topic, workdir / "ingest", args.workers, "bench-ingest")
        print(f"ingestor, {args.workers} worker(s): {full['events_per_s']:,.0f} events/s "
              f"({full['seconds']:.1f}s; wall incl. start-up and shutdown {full['wall_s']:.1f}s)")
        single = full
        if args.workers != 1:
            single = ingest(bootstrap, topic, workdir / "ingest-1", 1, "bench-ingest-1")
            print(f"ingestor, 1 worker: {single['events_per_s']:,.0f} events/s "
                  f"({single['seconds']:.1f}s)")
        assert full["records"] >= n_lines and single["records"] >= n_lines, "records missing"
    except BaseException:
        print(f"kept {workdir} for inspection", file=sys.stderr)
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        broker.stop()

    ratio = full["events_per_s"] / raw_rate
    ratio_single = single["events_per_s"] / raw_rate
    print(f"ratio to raw: {ratio:.2f} ({args.workers} workers), {ratio_single:.2f} (1 worker)")
    out = write_result("ingest", {
        "lines": n_lines,
        "raw_events_per_s": round(raw_rate),
        "ingest_events_per_s": round(full["events_per_s"]),
        "ratio_to_raw": round(ratio, 3),
        "ingest_workers": args.workers,
        "ingest_single_worker_events_per_s": round(single["events_per_s"]),
        "ratio_single_worker_to_raw": round(ratio_single, 3),
        "duplicates": ledger["duplicates"],
        "invalid_lines": ledger["invalid_total"],
    }, {
        "ingest_events_per_s >= 50000": full["events_per_s"] >= 50_000,
        "ratio_to_raw >= 0.5": ratio >= 0.5,
    })
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
