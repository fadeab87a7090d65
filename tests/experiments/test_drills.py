"""Closed-loop canary drills on the whole platform: a real Kafka broker, the ingestor, the
trainer and the registry, real ``python -m model_server`` processes behind the real router, the
simulator's users calling the router, and the canary controller as its own process reading the
telemetry topic. Reports, logs and router weights are kept under
``artifacts/experiments/<drill>/``.

Set-up (once per module): the simulated service shows popularity lists for 180 simulated
minutes into Kafka; the ingestor lands them; the trainer fits ALS and a popularity model on a
lake snapshot. The registry's ``champion`` alias is then the popularity version, ``challenger``
the ALS version, each served by its own model servers (two champion replicas) behind the router
at 100/0.

1. A **random-model** challenger (the ALS bundle with its factors replaced by noise, registered
   as a version and served by a model server of its own) is rolled back within two analysis
   windows while a champion replica is SIGKILLed; no user request fails.
2. The **ALS** challenger is stepped 5 → 25 → 50 → 100 % and promoted with a significant
   watch-through lift; the registry's champion alias moves to it and the champion replicas
   hot-swap to it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.platform.helpers import assert_no_failed_request

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "experiments"
EXPERIMENT = "demo-ab"  # the router's experiment in demo.platform.Platform.serve
# simulated seconds per real second: with every pick preceded by a /recommend call, ~30
# requests/s from 1,500 users, what one kafka-python consumer keeps up with on 2 busy cores
SPEED = 400

CANARY = ["experiments.canary.window_s=15", "experiments.canary.min_requests=25",
          "experiments.canary.join_window_s=1800", "experiments.canary.max_windows_per_step=4",
          "experiments.canary.telemetry=kafka", "experiments.canary.target=router",
          # p99 of a 15-s window on 2 cores shared with the whole platform swings by tens of ms;
          # the guardrail here catches a challenger that is slow against the 600-ms deadline
          "experiments.canary.max_p99_ratio=2.0", "experiments.canary.p99_slack_ms=150"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    from movierec_core.registry import open_registry
    from tests.platform.helpers import loop_through_router, trained_platform

    # ALS registered as champion, popularity after it
    p = trained_platform(tmp_path_factory.mktemp("drills"), users=1_500, seed=11,
                         history_minutes=180, invalid_rate=0.0, duplicate_rate=0.0)
    try:
        registry = open_registry(str(p.registry_root))
        als = registry.get_alias("movierec", "champion")
        popularity = next(v.version for v in registry.versions("movierec")
                          if v.manifest.get("model_type") == "popularity")
        registry.set_alias("movierec", "champion", popularity)
        registry.set_alias("movierec", "challenger", als)
        p.serve(restart=True, weights=(100, 0))  # a killed replica is brought back
        p.router_url = f"http://127.0.0.1:{p.ports['router']}"
        p.registry, p.als, p.popularity = registry, als, popularity
        warm(p, ("ms-champion-0", "ms-champion-1", "ms-challenger-0"))
        p.sim.simulation.cfg.behaviour.request_prob = 1.0  # every pick follows a /recommend call
        p.tee = loop_through_router(p, speed=SPEED)
        time.sleep(5)  # the service warms up on the champion alone
        yield p
    finally:
        p.close()


def warm(p, servers) -> None:
    """A few requests per model server: the canary judges p99 from its first window."""
    for uid in range(1, 40):
        for server in servers:
            httpx.get(f"http://127.0.0.1:{p.ports[server]}/recommend/{uid}", timeout=5)


def run_canary(p, name: str, challenger_url: str, extra: list[str]) -> tuple[dict, dict, Path]:
    """``python -m experiments canary`` against the router until it decides; returns its state,
    the router's weights after it, and the drill's artifact directory."""
    out_dir = ARTIFACTS / name
    shutil.rmtree(out_dir, ignore_errors=True)
    canary = p.sup.start(f"canary-{name}", [
        "python", "-m", "experiments", "canary", *p.common(("kafka", "data")),
        f"experiments.name={EXPERIMENT}", f"experiments.report_dir={out_dir}",
        f"experiments.canary.router_url={p.router_url}",
        f"experiments.canary.challenger_urls=[{challenger_url}]",
        f"experiments.canary.metadata_url=http://127.0.0.1:{p.ports['metadata_api']}",
        *CANARY, *extra,
    ])
    deadline = time.monotonic() + 300
    while canary.alive() and time.monotonic() < deadline:
        time.sleep(1)
    assert not canary.alive(), f"canary still running:\n{canary.log_tail()}"
    assert canary.process.returncode == 0, canary.log_tail()
    weights = httpx.get(f"{p.router_url}/admin/weights", timeout=5).json()
    (out_dir / "router-weights.json").write_text(json.dumps(weights, indent=1))
    return json.loads((out_dir / EXPERIMENT / "canary.json").read_text()), weights, out_dir


def keep_logs(p, out_dir: Path, children: list[str]) -> None:
    for child in children:
        shutil.copy(p.logs / f"{child}.log", out_dir / f"{child}.log")


def random_model_version(p, directory: Path) -> str:
    """The ALS bundle with its factors replaced by noise: a model that ranks at random."""
    bundle = directory / "random-bundle"
    shutil.copytree(p.registry.resolve("movierec", p.als), bundle)
    rng = np.random.default_rng(0)
    for name in ("user_factors.npy", "item_factors.npy"):
        shape = np.load(bundle / "model" / name, mmap_mode="r").shape
        np.save(bundle / "model" / name, rng.standard_normal(shape, dtype=np.float32))
    return p.registry.register("movierec", bundle)


def test_drill_random_model_challenger_is_rolled_back_within_two_windows(platform, tmp_path):
    p = platform
    version = random_model_version(p, tmp_path)
    port = p.port("ms-random")
    p.sup.start("model-server-random", [
        "python", "-m", "model_server", *p.common(), f"serving.http_port={port}",
        f"serving.alias={version}", f"serving.provenance_log={p.run_dir / 'provenance-random.jsonl'}"])
    url = f"http://127.0.0.1:{port}"
    p.sup.wait_http("model-server-random", f"{url}/v2/health/ready", timeout=180)
    assert httpx.get(f"{url}/recommend/1", timeout=5).headers["x-model-version"] == version
    warm(p, ("ms-random",))
    mark = p.tee.mark()
    p.sup.kill("model-server-champion-1")  # a crashed replica: the router fails over
    # random lists still get watched now and then (0.23 vs popularity's 0.29 watch-through in
    # a recorded run): a 6-point difference. The canary's always-valid interval over users
    # needs about six times the evidence the old per-request interval did (users as the unit,
    # and validity at every look): a 25 % first step and 60-s windows give it within two
    state, weights, out_dir = run_canary(p, "drill-random-rollback", url, [
        "experiments.canary.promote_alias=false", "experiments.canary.steps=[25,50,100]",
        "experiments.canary.window_s=60"])
    keep_logs(p, out_dir, ["router", "canary-drill-random-rollback", "model-server-random"])
    p.sup.stop("model-server-random")

    assert state["outcome"] == "rolled_back", state["windows"]
    assert len(state["windows"]) <= 2
    last = state["windows"][-1]
    assert last["decision"] == "rollback" and last["lift"]["ci_high"] < 0, last
    assert state["final_percent"] == 0
    assert [v["weight"] for v in weights["variants"]] == [100.0, 0.0]
    assert_no_failed_request(p.tee, mark)
    assert p.sup.children["model-server-champion-1"].restarts >= 1
    assert p.registry.get_alias("movierec", "champion") == p.popularity  # nothing promoted
    assert (out_dir / EXPERIMENT / "report.html").exists()
    assert "unreachable" in (out_dir / "router.log").read_text()  # the failover happened


def test_drill_als_challenger_is_promoted_over_the_popularity_champion(platform):
    p = platform
    mark = p.tee.mark()
    state, weights, out_dir = run_canary(
        p, "drill-als-promote", f"http://127.0.0.1:{p.ports['ms-challenger-0']}",
        ["experiments.canary.promote_alias=true",
         "experiments.canary.require_significant_lift=true"])
    # the promoted alias reaches the champion replicas by polling: they swap to ALS
    swapped = ""
    for _ in range(60):
        swapped = httpx.get(f"http://127.0.0.1:{p.ports['ms-champion-0']}/recommend/1",
                            timeout=5).headers.get("x-model-version", "")
        if swapped == p.als:
            break
        time.sleep(0.5)
    keep_logs(p, out_dir, ["router", "canary-drill-als-promote", "model-server-challenger-0",
                           "model-server-champion-0"])

    assert state["outcome"] == "promoted", state["windows"]
    assert [h["weights"][1][1] for h in state["weights_history"]] == [5.0, 25.0, 50.0, 100.0]
    last = state["windows"][-1]
    assert last["decision"] == "promote" and last["lift"]["ci_low"] > 0, last
    final = last["cumulative"]
    assert final["challenger"]["watch_through"] > final["champion"]["watch_through"]
    assert final["challenger"]["cost_per_play"] > 0 and final["champion"]["cost_per_play"] > 0
    assert [v["weight"] for v in weights["variants"]] == [0.0, 100.0]
    assert p.registry.get_alias("movierec", "champion") == p.als  # the registry moved
    assert swapped == p.als
    assert_no_failed_request(p.tee, mark)
    assert (out_dir / EXPERIMENT / "report.md").read_text().count("promote") >= 1
    assert (out_dir / EXPERIMENT / "report.html").exists()
