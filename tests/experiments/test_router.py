"""The router against tiny real HTTP model servers on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from experiments.assignment import Allocation
from tests.experiments.helpers import FakeModelServer, RunningRouter

CHAMPION = ["toy+story+1995", "heat+1995"]
CHALLENGER = ["the+lion+king+1994"]


@pytest.fixture
def servers():
    made = {"champion-0": FakeModelServer(CHAMPION, "v1"), "champion-1": FakeModelServer(CHAMPION, "v1"),
            "challenger-0": FakeModelServer(CHALLENGER, "v2")}
    yield made
    for s in made.values():
        s.stop()


@pytest.fixture
def router(servers):
    r = RunningRouter("ab-test", [
        ("champion", 50, [servers["champion-0"].url, servers["champion-1"].url]),
        ("challenger", 50, [servers["challenger-0"].url]),
    ])
    yield r
    r.stop()


def test_given_a_user_then_the_hashed_variant_answers_and_is_named_in_the_header(router):
    alloc = Allocation.from_weights({"champion": 50, "challenger": 50})
    with httpx.Client(base_url=router.url) as client:
        for uid in range(40):
            resp = client.get(f"/recommend/{uid}")
            expected = alloc.variant_of("ab-test", uid)
            assert resp.status_code == 200
            assert resp.headers["x-movierec-variant"] == expected
            assert resp.text == ",".join(CHAMPION if expected == "champion" else CHALLENGER)
            assert resp.headers["x-model-version"] == ("v1" if expected == "champion" else "v2")


def test_header_override_forces_a_variant_and_unknown_names_are_ignored(router):
    alloc = Allocation.from_weights({"champion": 50, "challenger": 50})
    uid = next(u for u in range(100) if alloc.variant_of("ab-test", u) == "champion")
    with httpx.Client(base_url=router.url) as client:
        forced = client.get(f"/recommend/{uid}", headers={"x-movierec-variant": "challenger"})
        assert (forced.headers["x-movierec-variant"], forced.text) == ("challenger", CHALLENGER[0])
        other = client.get(f"/recommend/{uid}", headers={"x-movierec-variant": "nope"})
        assert other.headers["x-movierec-variant"] == "champion"


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "١٢"])
def test_non_integer_user_ids_get_400_with_a_reason(router, bad):
    resp = httpx.get(f"{router.url}/recommend/{bad}")
    assert resp.status_code == 400
    assert resp.text == "user id must be a non-negative integer\n"


def test_replicas_share_traffic_round_robin(router, servers):
    alloc = Allocation.from_weights({"champion": 50, "challenger": 50})
    champions = [u for u in range(200) if alloc.variant_of("ab-test", u) == "champion"][:20]
    with httpx.Client(base_url=router.url) as client:
        for uid in champions:
            client.get(f"/recommend/{uid}")
    assert servers["champion-0"].hits == 10 and servers["champion-1"].hits == 10


def test_given_a_killed_replica_then_no_user_request_fails(router, servers):
    servers["champion-0"].stop()
    with httpx.Client(base_url=router.url) as client:
        statuses = {client.get(f"/recommend/{uid}").status_code for uid in range(60)}
    assert statuses == {200}
    assert servers["champion-1"].hits > 0


def test_given_the_challenger_entirely_down_then_the_champion_answers_for_it(router, servers):
    servers["challenger-0"].stop()
    alloc = Allocation.from_weights({"champion": 50, "challenger": 50})
    uid = next(u for u in range(100) if alloc.variant_of("ab-test", u) == "challenger")
    resp = httpx.get(f"{router.url}/recommend/{uid}")
    assert (resp.status_code, resp.text) == (200, ",".join(CHAMPION))
    assert resp.headers["x-movierec-variant"] == "champion"


def test_given_a_variant_answering_500_then_the_fallback_answers(servers):
    broken = FakeModelServer([], "v9", status=500)
    r = RunningRouter("e", [("champion", 0, [servers["champion-0"].url]), ("challenger", 100, [broken.url])])
    try:
        resp = httpx.get(f"{r.url}/recommend/7")
        assert (resp.status_code, resp.headers["x-movierec-variant"]) == (200, "champion")
    finally:
        r.stop()
        broken.stop()


def test_admin_weights_move_only_the_users_that_must(router):
    users = range(400)
    with httpx.Client(base_url=router.url) as client:
        client.post("/admin/weights", json={"weights": {"champion": 95, "challenger": 5}})
        before = {u: client.get(f"/admin/assignment/{u}").json()["variant"] for u in users}
        snap = client.post("/admin/weights", json={"weights": {"champion": 75, "challenger": 25}}).json()
        after = {u: client.get(f"/admin/assignment/{u}").json()["variant"] for u in users}
    assert [v["buckets"] for v in snap["variants"]] == [[0, 7500], [7500, 10000]]
    moved = {(before[u], after[u]) for u in users if before[u] != after[u]}
    assert moved == {("champion", "challenger")}
    assert all(after[u] == "challenger" for u in users if before[u] == "challenger")


def test_admin_can_add_a_variant_and_rejects_unknown_ones(router, servers):
    extra = FakeModelServer(["x+2000"], "v3")
    try:
        with httpx.Client(base_url=router.url) as client:
            bad = client.post("/admin/weights", json={"weights": {"ghost": 10, "champion": 90}})
            assert bad.status_code == 400
            ok = client.post("/admin/weights", json={"weights": {"third": 100}, "urls": {"third": [extra.url]}})
            assert [v["name"] for v in ok.json()["variants"]] == ["champion", "challenger", "third"]
            assert client.get("/recommend/5").text == "x+2000"
    finally:
        extra.stop()


def test_metrics_and_healthz(router):
    with httpx.Client(base_url=router.url) as client:
        assert client.get("/healthz").text == "ok\n"
        client.get("/recommend/1")
        client.get("/recommend/abc")
        text = client.get("/metrics").text
    assert 'movierec_router_variant_weight{experiment="ab-test",variant="champion"} 50.0' in text
    assert "movierec_router_requests_total{" in text
    assert 'status="400"' in text
    assert "movierec_router_request_duration_seconds_bucket{" in text
