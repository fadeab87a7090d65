"""Drills on the whole platform at small scale (issue 11): real broker, ingestor, trainer, two
champion model-server replicas behind the router, the simulator's closed loop running through
every drill.

Drills: a model server killed with SIGKILL (the supervisor's restart policy brings it back); the
broker stopped for 30 s; a corrupt model version registered as champion; the metadata API
answering 500s. After each: ``/recommend`` availability through the router measured from the
service's own recommendation-request lines (target >= 99.9 %), the platform back to normal
without a human; at the end every accepted event is in the lake, reconciled against the
simulator's ledger, and every invalid line in the DLQ.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from demo.report import reconcile
from tests.platform.helpers import (
    TeeSink,
    _readable,
    availability,
    loop_through_router,
    trained_platform,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AVAILABILITY_TARGET = 0.999  # over all drills together (issue 11's target)
# Per drill, a few hundred requests cannot resolve 99.9 % (one slow answer on a loaded 2-core
# machine is 0.2 %): each drill must stay above this floor, the whole run above the target.
PER_DRILL_FLOOR = 0.99
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "drills"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):
    p = trained_platform(tmp_path_factory.mktemp("drills"), restart_ingestor=True, users=1_000,
                         seed=3, history_minutes=120, invalid_rate=0.005, duplicate_rate=0.005)
    try:
        p.serve(restart=True)
        tee = loop_through_router(p, speed=240)  # 4 simulated minutes per second, until stopped
        p.results = {}
        yield p, tee
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "drills.json").write_text(json.dumps(getattr(p, "results", {}), indent=2) + "\n")
        p.close()


def _wait_requests(tee: TeeSink, mark: int, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sum(tee.since(mark).values()) < n and time.monotonic() < deadline:
        time.sleep(0.2)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_model_server_killed_with_sigkill_is_restarted_and_users_see_no_failure(running) -> None:
    p, tee = running
    mark = tee.mark()
    _wait_requests(tee, mark, 50)
    child = p.sup.children["model-server-champion-0"]
    p.sup.kill("model-server-champion-0")
    deadline = time.monotonic() + 120
    while not (child.restarts >= 1 and _ready(p.ports["ms-champion-0"])) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert child.restarts >= 1 and _ready(p.ports["ms-champion-0"]), child.log_tail()
    _wait_requests(tee, mark, sum(tee.since(mark).values()) + 50)
    counts = tee.since(mark)
    p.results["model_server_sigkill"] = {"requests": sum(counts.values()), "by_status": dict(counts),
                                         "availability": availability(counts)}
    assert availability(counts) >= PER_DRILL_FLOOR, counts


def _ingestion_recovers(p, timeout: float = 240) -> float:
    """Seconds until the ingestor lands new lines again and its consumer lag is small."""
    start = time.monotonic()
    before = p.ingested_total()
    while time.monotonic() - start < timeout:
        counts = p.ingestor_counts()
        lag = counts.get("movierec_ingestor_consumer_lag", float("inf"))
        if counts.get("movierec_ingestor_events_total", 0) > before and lag < 5_000:
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"ingestion did not recover within {timeout}s: {p.ingestor_counts()}")


def test_broker_stopped_for_30_seconds_loses_nothing(running) -> None:
    p, tee = running
    mark = tee.mark()
    p.broker.stop()
    time.sleep(30)
    p.broker.start()
    recovery_s = _ingestion_recovers(p)
    _wait_requests(tee, mark, sum(tee.since(mark).values()) + 50)
    counts = tee.since(mark)
    p.results["broker_stopped_30s"] = {"requests": sum(counts.values()), "by_status": dict(counts),
                                       "availability": availability(counts),
                                       "ingestion_recovered_after_s": round(recovery_s, 1)}
    assert availability(counts) >= PER_DRILL_FLOOR, counts
    assert p.sup.children["ingestor"].alive()


def test_corrupt_model_version_is_never_served(running) -> None:
    from movierec_core.registry import open_registry

    p, tee = running
    reg = open_registry(str(p.registry_root))
    good = reg.get_alias("movierec", "champion")
    corrupt = p.run_dir / "corrupt-bundle"
    shutil.copytree(reg.resolve("movierec", good), corrupt)
    for npy in (corrupt / "model").glob("*.npy"):
        npy.write_bytes(npy.read_bytes()[:100])  # truncated factor files
    mark = tee.mark()
    # the registry checks the manifest, not the factors: the truncated version registers and
    # becomes champion; the model servers must refuse to load it and keep serving the good one
    bad = reg.register("movierec", corrupt, aliases=("champion",))
    assert bad != good and reg.get_alias("movierec", "champion") == bad
    time.sleep(6)  # a few alias polls
    versions = {httpx.get(f"http://127.0.0.1:{p.ports[f'ms-{name}']}/recommend/1", timeout=2)
                .headers.get("x-model-version") for name in ("champion-0", "champion-1")}
    reg.rollback("movierec")
    _wait_requests(tee, mark, sum(tee.since(mark).values()) + 30)
    counts = tee.since(mark)
    p.results["corrupt_model"] = {"registered": bad, "served_versions": sorted(v or "" for v in versions),
                                  "availability": availability(counts), "by_status": dict(counts)}
    assert versions == {good}
    assert reg.get_alias("movierec", "champion") == good
    assert availability(counts) >= PER_DRILL_FLOOR, counts


def test_metadata_api_500s_delay_enrichment_but_not_ingestion_or_serving(running) -> None:
    p, tee = running
    api = f"http://127.0.0.1:{p.ports['metadata_api']}"
    before = p.ingested_total()
    mark = tee.mark()
    httpx.post(f"{api}/admin/faults", json={"error_rate": 1.0}, timeout=5).raise_for_status()
    try:
        time.sleep(10)
        # a brand-new user (no history, metadata failing) still gets a list
        r = httpx.get(f"http://127.0.0.1:{p.ports['router']}/recommend/987654", timeout=2)
        assert r.status_code == 200 and 1 <= len(r.text.split(",")) <= 20
        deadline = time.monotonic() + 60
        while p.ingested_total() <= before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert p.ingested_total() > before  # ingestion went on during the outage
    finally:
        httpx.post(f"{api}/admin/faults", json={"error_rate": 0.0}, timeout=5).raise_for_status()
    counts = tee.since(mark)
    errors = p.ingestor_counts()
    p.results["metadata_500s"] = {"availability": availability(counts), "by_status": dict(counts),
                                  "enrichment_requests": {k: v for k, v in errors.items()
                                                          if k.startswith("movierec_ingestor_enrichment_requests_total{")}}
    assert availability(counts) >= PER_DRILL_FLOOR, counts


def test_after_the_drills_every_accepted_event_is_in_the_lake(running) -> None:
    p, tee = running
    p.sim.stop()
    p.sink.flush()
    overall = tee.since(0)
    failed = _readable(tee.failed_since(0))  # when, whom, which server, status, error
    p.results["availability_all_drills"] = {"requests": sum(overall.values()), "by_status": dict(overall),
                                            "availability": availability(overall), "failed": failed}
    p.wait_ingested(timeout=300)
    result = reconcile(p)
    p.results["reconcile"] = result
    assert result["lost_by_kind"] == {"watch": 0, "rate": 0, "account": 0, "recommend": 0}
    # every invalid line dead-lettered (the DLQ is at-least-once: count distinct source lines)
    assert result["dlq_distinct_lines"] == result["invalid_produced"]
    assert result["dlq_records"] >= result["dlq_distinct_lines"]
    assert result["reconciled"]
    assert availability(overall) >= AVAILABILITY_TARGET, (overall, failed)
