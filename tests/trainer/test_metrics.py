"""The trainer's Prometheus metrics, the champion's timestamp in a group of its own, and a
Pushgateway that is down (never fatal)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import pytest
from prometheus_client import generate_latest

from devstack.ports import free_port, wait_for_port
from movierec_core.pushed_metrics import push_champion_moved
from trainer.metrics import TrainerMetrics


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metric_names_and_unreachable_pushgateway():
    m = TrainerMetrics()
    m.runs.labels(outcome="success").inc()
    m.duration.set(12.5)
    text = generate_latest(m.registry).decode()
    assert 'movierec_trainer_runs_total{outcome="success"} 1.0' in text
    assert "movierec_trainer_duration_seconds 12.5" in text
    # a run that did not move the champion must not report a (zero) champion time
    assert "last_champion" not in text
    assert m.push(f"127.0.0.1:{_closed_port()}") is False
    assert m.push("") is False
    assert push_champion_moved(f"127.0.0.1:{_closed_port()}", "movierec", "v0001") is False


PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which(PUSHGATEWAY) and not __import__("os").path.exists(PUSHGATEWAY),
                    reason="needs Debian's prometheus-pushgateway (make apt-deps)")
def test_a_later_run_does_not_erase_the_champions_time(tmp_path) -> None:
    """Before: the trainer pushed last_champion in its run group, so every run that did not
    promote replaced it with 0 and MovierecNoNewChampion fired at once."""
    port = free_port()
    proc = subprocess.Popen([PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_port("127.0.0.1", port, 20)
        gateway = f"127.0.0.1:{port}"
        assert push_champion_moved(gateway, "movierec", "v0003", at=1_700_000_000)
        run = TrainerMetrics()
        run.runs.labels(outcome="success").inc()
        assert run.push(gateway)  # a later run that did not promote
        time.sleep(0.2)
        text = httpx.get(f"http://{gateway}/metrics", timeout=5).text
        champion = [ln for ln in text.splitlines()
                    if ln.startswith("movierec_trainer_last_champion_timestamp_seconds{")]
        assert len(champion) == 1 and 'job="movierec_champion"' in champion[0]
        assert 'model="movierec"' in champion[0] and 'version="v0003"' in champion[0]
        assert champion[0].endswith(" 1.7e+09")
        assert 'movierec_trainer_runs_total{instance="",job="movierec_trainer",outcome="success"} 1' in text
    finally:
        proc.terminate()
        proc.wait(10)
