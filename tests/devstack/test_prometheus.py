"""A real Prometheus scraping a real /metrics endpoint, evaluating the real alert rules; and the
drift job pushing to a real Pushgateway."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from devstack.ports import free_port
from devstack.prometheus import (
    ALERTS,
    format_summary,
    render_config,
    start_prometheus,
    summary,
    wait_for_targets,
)

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="`make apt-deps` installs it")
def test_prometheus_scrapes_and_fires_drift_alert(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    detected = Gauge("movierec_drift_detected", "test", ["detector"], registry=registry)
    detected.labels(detector="genre_mix").set(1)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        config = render_config(tmp_path / "prometheus.yml",
                               {"movierec-drift-online": [f"127.0.0.1:{port}"]},
                               rule_files=[str(ALERTS)], scrape_interval="1s")
        with start_prometheus(config, tmp_path / "data") as prom:
            assert wait_for_targets(prom.url, 1, timeout_s=60)
            figures = {}
            for _ in range(120):
                figures = summary(prom.url)
                if figures["alerts_firing"]:
                    break
                time.sleep(0.5)
            assert figures["alerts_firing"] == ["MovierecDriftDetected"]
            assert figures["drift_detectors_raised"] == 1.0
            assert figures["targets_up"] == 1.0 and figures["targets_down"] == []
            text = format_summary(figures)
            assert "drift_detectors_raised" in text and "MovierecDriftDetected" in text
        assert prom.process.poll() is not None
    finally:
        server.shutdown()


@pytest.mark.skipif(shutil.which("prometheus-pushgateway") is None,
                    reason="`make apt-deps` installs it")
def test_drift_job_pushes_to_pushgateway(tmp_path: Path) -> None:
    from drift.config import register_configs
    from drift.job import run_job
    from movierec_core.config import compose
    from tests.drift.lakeutil import write_catalog, write_window
    from tests.drift.world import World

    world = World(1)
    write_window(tmp_path, world.window(0), "w0")
    write_window(tmp_path, world.window(1), "w1")
    write_catalog(tmp_path, world.catalog())
    port = free_port()
    gateway = subprocess.Popen(
        [shutil.which("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        register_configs()
        cfg = compose("drift", [f"data.lake_root={tmp_path}", "drift.current_hours=1",
                                "drift.reference_hours=1", f"drift.pushgateway=127.0.0.1:{port}"])
        result = run_job(cfg)
        assert result.run is not None and not result.run.is_drift
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'movierec_drift_detected{detector="genre_mix",instance="",job="movierec-drift"} 0' \
            in body
        assert "movierec_drift_last_run_timestamp_seconds{" in body
    finally:
        gateway.terminate()
        gateway.wait(timeout=20)
