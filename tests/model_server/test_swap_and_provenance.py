"""Swaps keep the old version on failure; provenance lands as JSON lines off the hot path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_server.metrics import MODEL_SWAPS
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

    log = ProvenanceLog(None, kafka_sink=sink)
    log.log("r1", 1, ["a"], {}, "recommend", "model")
    log.close()
