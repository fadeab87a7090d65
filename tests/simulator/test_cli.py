from __future__ import annotations

import json
import subprocess
import sys

from movierec_core.config import compose
from simulator import config as _config  # noqa: F401
from simulator.__main__ import qualify
from simulator.ledger import Ledger


def test_config_composes_with_defaults_and_overrides():
    cfg = compose("simulator", ["simulator.clock.speed=600", "kafka.topic=t"])
    assert cfg.simulator.world.n_users == 10_000 and cfg.simulator.world.n_movies == 20_000
    assert cfg.simulator.clock.speed == 600 and cfg.kafka.topic == "t"
    assert cfg.metadata_api.url and cfg.data.lake_root


def test_bare_keys_are_simulator_keys():
    assert qualify("clock.speed=600", "run") == "simulator.clock.speed=600"
    assert qualify("kafka.bootstrap=x:1", "run") == "kafka.bootstrap=x:1"
    assert qualify("kind=oracle", "endpoint") == "simulator.endpoint.kind=oracle"
    assert qualify("port=9000", "api") == "simulator.api.port=9000"


def test_stream_command_writes_lines_and_ledger(tmp_path):
    out, ledger_path = tmp_path / "log.txt", tmp_path / "ledger.json"
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "stream", "world.n_users=300", "world.n_movies=800",
         "duration_minutes=40", f"sink.path={out}", f"ledger_path={ledger_path}",
         "faults.invalid_rate=0.01", "faults.duplicate_rate=0.01"],
        capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    ledger = Ledger.load(ledger_path)
    assert summary["lines_total"] == ledger.lines_total > 0
    assert len(out.read_bytes().splitlines()) == ledger.lines_total
    assert (tmp_path / "simulator-config.yaml").exists()
