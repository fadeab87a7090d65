"""The real ``python -m model_server`` against unauthorised and hostile clients (issue 21):
admin endpoints and KServe's model repository behind the token, body limits before parsing,
a per-client rate limit, slow clients, odd ids answered like the router answers them."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from movierec_core.models.testing import tiny_bundle
from movierec_core.registry import FileRegistry
from tests.experiments.helpers import RunningRouter
from tests.model_server.helpers import model_server_process

pytestmark = pytest.mark.integration

TOKEN = "model-server-admin-token-42"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("model_server_security")
    registry = FileRegistry(root / "registry")
    registry.register("movierec", tiny_bundle(root / "b1", seed=0), aliases=("champion",))
    registry.register("movierec", tiny_bundle(root / "b2", seed=1))
    (root / "token").write_text(TOKEN + "\n")
    with model_server_process([
        f"data.registry_root={root / 'registry'}", "model_server.online_store=false",
        "metadata_api.url=", f"model_server.admin_token_file={root / 'token'}",
        "model_server.max_body_bytes=4096", "model_server.rate_limit_rps=20",
        "model_server.rate_limit_burst=20",
    ], root) as base:
        yield base


def served_quickly(base: str) -> None:
    t0 = time.monotonic()
    resp = httpx.get(f"{base}/v2/models/movierec/ready", timeout=5)
    assert resp.status_code == 200 and time.monotonic() - t0 < 0.5


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_admin_endpoints_need_the_token(server: str) -> None:
    assert httpx.get(f"{server}/admin/model").status_code == 401
    assert httpx.get(f"{server}/admin/model", headers=auth("wrong")).status_code == 403
    current = httpx.get(f"{server}/admin/model", headers=auth(TOKEN))
    assert current.status_code == 200 and current.json()["model_version"] == "v0001"
    refused = httpx.post(f"{server}/admin/reload", json={"version": "v0002"})
    assert refused.status_code == 401
    assert httpx.get(f"{server}/admin/model", headers=auth(TOKEN)).json()[
        "model_version"] == "v0001"  # not pinned to v0002
    pinned = httpx.post(f"{server}/admin/reload", json={"version": "v0002"}, headers=auth(TOKEN))
    assert pinned.status_code == 200 and pinned.json()["version"] == "v0002"
    httpx.post(f"{server}/admin/reload", json={"version": "v0001"}, headers=auth(TOKEN))


def test_kserves_repository_endpoints_are_admin_only(server: str) -> None:
    unload = httpx.post(f"{server}/v2/repository/models/movierec/unload")
    assert unload.status_code == 401
    assert httpx.post(f"{server}/v2/repository/models/movierec/load",
                      headers=auth("wrong")).status_code == 403
    served_quickly(server)  # the model was not unloaded
    assert httpx.get(f"{server}/recommend/1000").status_code == 200


def test_bodies_over_the_limit_are_refused_before_parsing(server: str) -> None:
    big = b'{"instances": [' + b",".join(b'{"user_id": 1}' for _ in range(1000)) + b"]}"
    assert len(big) > 4096
    resp = httpx.post(f"{server}/v1/models/movierec:predict", content=big)
    assert resp.status_code == 413 and "over 4096 bytes" in resp.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    chunked = httpx.post(f"{server}/v2/models/movierec/infer", content=chunks())
    assert chunked.status_code == 413
    small = httpx.post(f"{server}/v1/models/movierec:predict",
                       json={"instances": [{"user_id": 1000, "k": 3}]})
    assert small.status_code == 200 and len(small.json()["predictions"][0]["items"]) == 3


def test_a_bad_content_length_is_400(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST /v1/models/movierec:predict HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: -1\r\n\r\n")
        answer = s.recv(4096)
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 400 ")
    served_quickly(server)


def test_one_client_flooding_recommend_gets_429_with_retry_after(server: str) -> None:
    time.sleep(1.1)  # a full bucket
    with httpx.Client() as client:
        codes = [client.get(f"{server}/recommend/{1000 + i % 5}") for i in range(60)]
    limited = [r for r in codes if r.status_code == 429]
    assert 20 <= len(limited) <= 40, len(limited)
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    time.sleep(1.1)
    assert httpx.get(f"{server}/recommend/1000").status_code == 200


def test_slow_clients_do_not_stop_the_others(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    slow = []
    for _ in range(50):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /recommend/1000 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(s)
    try:
        for _ in range(3):
            served_quickly(server)
            time.sleep(0.2)
    finally:
        for s in slow:
            s.close()


@pytest.mark.parametrize("user", ["9" * 19, str(10**30), "1" * 400])
def test_odd_ids_are_answered_alike_by_the_router_and_the_model_server(
        server: str, user: str) -> None:
    time.sleep(0.2)
    direct = httpx.get(f"{server}/recommend/{user}")
    router = RunningRouter("odd", [("champion", 100, [server])])
    try:
        routed = httpx.get(f"{router.url}/recommend/{user}")
    finally:
        router.stop()
    assert direct.status_code == routed.status_code == 200
    assert direct.text == routed.text and len(direct.text.split(",")) == 20
    assert direct.headers["x-recommendation-source"] == "popularity"
