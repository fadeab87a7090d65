"""The router in front of two real ``python -m model_server`` processes (champion and
challenger aliases of one registry), and a canary promotion moving the registry alias."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import httpx
import pytest

from devstack.ports import free_port
from devstack.supervisor import Supervisor
from experiments.assignment import Allocation
from experiments.canary import CanaryController, Policy, RouterDriver
from movierec_core.events import RecommendationRequest, WatchMinute, format_event
from movierec_core.models.testing import tiny_bundle
from movierec_core.registry import FileRegistry

pytestmark = pytest.mark.integration

USERS = [1000 + 10 * r for r in range(60)]  # the tiny bundle's known users


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("ab-model-servers")
    registry = FileRegistry(root / "registry")
    registry.register("movierec", tiny_bundle(root / "b1", model="popularity", seed=0),
                      aliases=("champion",))
    registry.register("movierec", tiny_bundle(root / "b2", model="als", seed=1),
                      aliases=("challenger",))
    ports = {"champion": free_port(), "challenger": free_port(), "router": free_port()}
    with Supervisor(root / "logs") as sup:
        for alias in ("champion", "challenger"):
            sup.start(alias, ["python", "-m", "model_server", f"serving.http_port={ports[alias]}",
                              f"serving.alias={alias}", f"data.registry_root={root / 'registry'}",
                              f"data.online_store_path={root / 'online.sqlite'}",
                              f"serving.provenance_log={root / alias}.jsonl",
                              "metadata_api.url=http://127.0.0.1:9", "serving.deadline_ms=2000"],
                      env={"OPENBLAS_NUM_THREADS": "1"})
        router = f"http://127.0.0.1:{ports['router']}"
        sup.start("router", [
            "python", "-m", "experiments", "router", "experiments.name=ab-real",
            f"serving.http_port={ports['router']}", f"experiments.state_dir={root / 'state'}",
            f"experiments.variants=[{{name:champion,weight:50,urls:[http://127.0.0.1:{ports['champion']}]}},"
            f"{{name:challenger,weight:50,urls:[http://127.0.0.1:{ports['challenger']}]}}]",
        ])
        for alias in ("champion", "challenger"):
            sup.wait_http(alias, f"http://127.0.0.1:{ports[alias]}/v2/models/movierec/ready", 120)
        sup.wait_http("router", f"{router}/healthz")
        yield {"router": router, "registry": registry, "root": root}


def test_each_user_gets_their_variants_model_version_through_the_router(platform):
    alloc = Allocation.from_weights({"champion": 50, "challenger": 50})
    with httpx.Client(base_url=platform["router"], timeout=10) as client:
        for uid in USERS[:20] + [999_999]:
            resp = client.get(f"/recommend/{uid}")
            variant = alloc.variant_of("ab-real", uid)
            assert resp.status_code == 200
            assert resp.headers["x-movierec-variant"] == variant
            expected = "v0001" if variant == "champion" else "v0002"
            assert resp.headers["x-model-version"] == expected
            assert 0 < len(resp.text.split(",")) <= 20
        assert client.get("/recommend/x1").status_code == 400


def test_a_promoted_canary_moves_the_champion_alias(platform):
    """Telemetry where the challenger's users watch what they were shown: the controller
    steps 5 → 25 → 50 → 100 on the real router and promotes v0002 in the registry."""
    registry = platform["registry"]
    lines: list[bytes] = []
    lock = threading.Lock()
    now = {"t": datetime(2025, 3, 2, 12, 0), "wall": 0.0}
    client = httpx.Client(base_url=platform["router"], timeout=10)

    class Telemetry:
        def poll(self):
            with lock:
                out, lines[:] = list(lines), []
            return out

    def sleep(_s):
        # one window: 600 users (known and new) ask the real router; challenger users watch
        for i, uid in enumerate(range(1000, 1600)):
            t = now["t"] + timedelta(seconds=i)
            resp = client.get(f"/recommend/{uid}")
            movies = tuple(resp.text.split(","))
            req = RecommendationRequest(t, uid, "router", resp.status_code, movies, "", 12)
            batch = [format_event(req).encode()]
            if resp.headers["x-movierec-variant"] == "challenger" or i % 5 == 0:
                batch += [format_event(WatchMinute(t + timedelta(minutes=m + 1), uid, movies[0], m)).encode()
                          for m in range(20)]
            with lock:
                lines.extend(batch)
        now["t"] += timedelta(hours=3)
        now["wall"] += 60

    result = CanaryController(
        "ab-real", Policy(min_requests=20, max_watch_through_drop=0.2), RouterDriver(
            platform["router"], "champion", "challenger"), Telemetry(),
        join_window_s=3600, promote=lambda: registry.promote("movierec"), sleep=sleep,
        clock=lambda: now["wall"], window_s=60, max_windows=8,
    ).run()
    client.close()
    assert result.outcome == "promoted", [(w.decision, w.reasons) for w in result.windows]
    assert registry.get_alias("movierec", "champion") == "v0002"
    weights = httpx.get(f"{platform['router']}/admin/weights").json()
    assert [v["weight"] for v in weights["variants"]] == [0.0, 100.0]
