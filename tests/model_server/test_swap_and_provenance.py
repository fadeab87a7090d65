"""Swaps keep the old version on failure; provenance lands as JSON lines off the hot path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from model_server.metrics import MODEL_SWAPS, PROVENANCE_DROPPED
from model_server.provenance import ProvenanceLog
from model_server.swap import ModelHolder


class Fake:
    def __init__(self, path: Path) -> None:
        if path.name == "broken":
            raise ValueError("corrupt bundle")
        self.path, self.version, self.model_type = path, path.name, "fake"


def test_reload_swaps_and_a_failing_load_keeps_the_old_version(tmp_path: Path) -> None:
    target = {"ref": tmp_path / "v1"}
    holder: ModelHolder[Fake] = ModelHolder(
        load=Fake, resolve=lambda ref: tmp_path / ref if ref else target["ref"])
    first = holder.load_initial()
    assert holder.reload(None) is first  # same version: no reload
    swaps = MODEL_SWAPS._value.get()
    second = holder.reload("v2")
    assert holder.current is second and second.version == "v2"
    assert MODEL_SWAPS._value.get() == swaps + 1
    with pytest.raises(ValueError):
        holder.reload("broken")
    assert holder.current is second


def test_provenance_records_are_json_lines(tmp_path: Path) -> None:
    log = ProvenanceLog(tmp_path / "p" / "provenance.jsonl")
    model = {"model_version": "v0003", "code_version": "abc", "snapshot_id": "s1"}
    log.log("r1", 42, ["a", "b"], model, "recommend", "model")
    log.log("r2", 43, [], model, "v1", "fallback")
    log.close()
    records = [json.loads(x) for x in (tmp_path / "p" / "provenance.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "time"} for r in records] == [
        {"request_id": "r1", "user_id": 42, "items": ["a", "b"], "endpoint": "recommend",
         "source": "model", **model},
        {"request_id": "r2", "user_id": 43, "items": [], "endpoint": "v1", "source": "fallback",
         **model}]


def test_a_failing_sink_drops_and_counts_without_raising(tmp_path: Path) -> None:
    def sink(lines: list[bytes]) -> None:
        raise ConnectionError("broker down")

    before = PROVENANCE_DROPPED._value.get()
    log = ProvenanceLog(path := tmp_path / "provenance.jsonl", kafka_sink=sink,
                        flush_interval_s=0.01)
    for i in range(3):
        log.log(f"r{i}", i, ["a"], {}, "recommend", "model")  # must not raise
    log.close()
    # the broker's failure drops the three records from Kafka and counts them; the file keeps them
    assert PROVENANCE_DROPPED._value.get() - before == 3
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == [
        "r0", "r1", "r2"]


def test_a_full_buffer_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    before = PROVENANCE_DROPPED._value.get()
    log = ProvenanceLog(path := tmp_path / "provenance.jsonl", max_queue=2,
                        flush_interval_s=60)  # the writer sleeps: the queue fills
    for i in range(5):
        log.log(f"r{i}", i, ["a"], {}, "recommend", "model")
    log.close()
    assert PROVENANCE_DROPPED._value.get() - before == 3
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == [
        "r0", "r1"]


def test_provenance_file_is_rotated_so_a_pods_scratch_volume_never_fills(tmp_path: Path) -> None:
    """On the cluster the file lives in a size-limited emptyDir: past ``max_bytes`` it rotates,
    keeping ``backups`` old files; every record of the last files is whole, none split."""
    path = tmp_path / "provenance.jsonl"
    log = ProvenanceLog(path, max_bytes=2000, backups=2, flush_interval_s=0.01)
    model = {"model_version": "v0001"}
    for i in range(300):
        log.log(f"r{i}", i, ["a", "b", "c"], model, "recommend", "model")
        if i % 10 == 9:
            time.sleep(0.02)  # several flushes, so several writes
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["provenance.jsonl", "provenance.jsonl.1", "provenance.jsonl.2"]
    sizes = [p.stat().st_size for p in tmp_path.iterdir()]
    assert sum(sizes) <= 3 * 2000 + 5000  # bounded: at most one batch over per file
    kept = [json.loads(line) for name in ("provenance.jsonl.2", "provenance.jsonl.1",
                                          "provenance.jsonl")
            for line in (tmp_path / name).read_text().splitlines()]
    ids = [r["user_id"] for r in kept]
    assert ids == sorted(ids) and ids[-1] == 299  # the newest records, in order, none torn
    assert len(ids) < 300  # the oldest were dropped from the file


def test_holder_waits_for_an_alias_that_does_not_exist_yet(tmp_path: Path) -> None:
    from movierec_core.registry import RegistryError

    state = {"alias": None}

    def resolve(ref: str | None) -> Path:
        if ref is None and state["alias"] is None:
            raise RegistryError("movierec: no alias or version 'champion'")
        return tmp_path / (ref or state["alias"])

    holder: ModelHolder[Fake] = ModelHolder(load=Fake, resolve=resolve)
    with pytest.raises(RegistryError):
        holder.load_initial()
    assert holder.load_initial(wait=True) is None and holder.current is None
    holder.start_polling(0.01)
    state["alias"] = "v1"
    deadline = time.monotonic() + 5
    while holder.current is None and time.monotonic() < deadline:
        time.sleep(0.01)
    holder.stop()
    assert holder.current is not None and holder.current.version == "v1"


def test_kafka_sink_with_its_broker_down_neither_blocks_start_up_nor_serving(
        tmp_path: Path) -> None:
    """A model server restarted while Kafka is down (both restarted at once on a node) must
    start: the producer is created on the writer thread when the first batch is sent, a failed
    attempt drops and counts that batch, and the next attempt waits ``retry_s``."""
    from devstack.ports import free_port
    from model_server.provenance import KafkaSink

    sink = KafkaSink(f"127.0.0.1:{free_port()}", "provenance", retry_s=3600,
                     connect_timeout_s=1)  # no broker there
    assert sink.producer is None  # nothing connected at construction
    before = PROVENANCE_DROPPED._value.get()
    log = ProvenanceLog(path := tmp_path / "provenance.jsonl", kafka_sink=sink,
                        flush_interval_s=0.01)
    log.log("r0", 0, ["a"], {}, "recommend", "model")
    deadline = time.monotonic() + 60
    while PROVENANCE_DROPPED._value.get() - before < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in (1, 2):  # within retry_s: dropped at once, no new connection attempt
        log.log(f"r{i}", i, ["a"], {}, "recommend", "model")
    log.close()
    assert PROVENANCE_DROPPED._value.get() - before == 3
    assert sink.producer is None
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == [
        "r0", "r1", "r2"]
