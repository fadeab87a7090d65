"""The router against hostile and unauthorised clients (issue 21): admin behind a token with
an audit line per call, upstream URLs only from the allowlist, body and head limits,
slowloris, connection floods, a per-client rate limit, odd ids. Every test also checks that
an ordinary client is still answered, quickly."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest

from experiments.router import Limits
from movierec_core.security import AdminAuth, RateLimiter
from tests.experiments.helpers import FakeModelServer, RunningRouter

TOKEN = "test-admin-token-0123456789"


HEADER_TIMEOUT_S = 1.0  # the routers' here: when the reaper closes an unfinished head


@pytest.fixture
def upstream():
    server = FakeModelServer(["m1", "m2"], "v1")
    yield server
    server.stop()


def make_router(upstream, **options) -> RunningRouter:
    return RunningRouter("sec", [("champion", 100, [upstream.url]), ("challenger", 0, [])],
                         **options)


@pytest.fixture
def router(upstream):
    r = make_router(upstream, auth=AdminAuth(token=TOKEN),
                    limits=Limits(max_body_bytes=1024, max_connections=16, socket_timeout_s=5,
                                  header_timeout_s=HEADER_TIMEOUT_S))
    yield r
    r.stop()


def served_quickly(router: RunningRouter, user: int = 7) -> None:
    """An ordinary request is answered before the reaper could have closed any hostile
    connection (``HEADER_TIMEOUT_S``): it was not queued behind them. (A bound of 0.5 s failed
    once at 0.58 s on a slow host under make test: not a speed check, an ordering one.)"""
    t0 = time.monotonic()
    resp = httpx.get(f"{router.url}/recommend/{user}", timeout=5)
    assert resp.status_code == 200 and resp.text == "m1,m2"
    assert time.monotonic() - t0 < HEADER_TIMEOUT_S


def raw(router: RunningRouter, data: bytes, timeout: float = 5.0) -> bytes:
    port = int(router.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_admin_needs_the_token_and_every_call_is_audited(router, caplog):
    caplog.set_level(logging.INFO, logger="movierec.audit")
    url = f"{router.url}/admin/weights"
    missing = httpx.get(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 403
    body = {"weights": {"champion": 90, "challenger": 10}}
    refused = httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 403
    assert [v.weight for v in router.router.state.variants] == [100.0, 0.0]  # unchanged
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert [v["weight"] for v in ok.json()["variants"]] == [90.0, 10.0]
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "movierec.audit"]
    # the two GETs refused, the POST refused, the POST admitted, the GET admitted
    assert len(lines) == 5
    assert "GET /admin/weights -> 401" in lines[0] and "GET /admin/weights -> 403" in lines[1]
    assert "POST /admin/weights -> 403" in lines[2]
    assert "caller=token:" in lines[3] and "POST /admin/weights -> 200" in lines[3]
    assert '"challenger": 10.0' in lines[3]
    assert "caller=token:" in lines[4] and "GET /admin/weights -> 200" in lines[4]
    served_quickly(router)


def test_without_a_token_only_loopback_callers_reach_admin():
    auth = AdminAuth(token=None)
    assert auth.check(None, "127.0.0.1").ok and auth.check(None, "::1").ok
    remote = auth.check("Bearer anything", "10.244.0.7")
    assert remote.status == 403 and "admin disabled" in remote.message
    assert AdminAuth(token=None, allow_loopback_without_token=False).check(
        None, "127.0.0.1").status == 403


def test_a_rotated_token_file_takes_effect_without_a_restart(tmp_path):
    path = tmp_path / "token"
    path.write_text("first\n")
    auth = AdminAuth(token_file=path)
    assert auth.check("Bearer first", "10.0.0.1").ok
    path.write_text("second-and-longer\n")
    assert not auth.check("Bearer first", "10.0.0.1").ok
    assert auth.check("Bearer second-and-longer", "10.0.0.1").ok


def test_upstream_urls_can_only_be_pointed_at_allowed_hosts(router):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{router.url}/admin/weights"
    hijack = httpx.post(url, headers=headers, json={
        "weights": {"champion": 0, "challenger": 100},
        "urls": {"challenger": ["http://169.254.169.254/latest/meta-data"]}})
    assert hijack.status_code == 403 and "169.254.169.254" in hijack.text
    assert router.router.state.by_name("challenger").urls == []
    assert [v.weight for v in router.router.state.variants] == [100.0, 0.0]
    local = httpx.post(url, headers=headers, json={
        "weights": {"champion": 100, "challenger": 0},
        "urls": {"challenger": ["http://127.0.0.1:9"]}})
    assert local.status_code == 200
    served_quickly(router)


@pytest.mark.parametrize(("length", "status"), [("-5", 400), ("abc", 400), ("1e3", 400),
                                                ("99999999999", 413), ("2048", 413)])
def test_bad_or_huge_content_length_is_refused_without_reading_the_body(router, length, status):
    head = (f"POST /admin/weights HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    answer = raw(router, head, timeout=2)  # no body sent: a server that waited would time out
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
    assert b"Connection: close" in answer
    served_quickly(router)


def test_chunked_bodies_are_refused(router):
    answer = raw(router, b"POST /admin/weights HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", timeout=2)
    assert answer.startswith(b"HTTP/1.1 411 ")
    served_quickly(router)


def test_slowloris_connections_are_closed_and_others_are_served(router):
    port = int(router.url.rsplit(":", 1)[1])
    slow = []
    for _ in range(10):  # request heads that never finish
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(s)
    served_quickly(router)
    for _ in range(4):  # a byte now and then: never completes within header_timeout_s
        time.sleep(0.4)
        for s in slow:
            try:
                s.sendall(b"a")
            except OSError:
                pass
        served_quickly(router)
    closed = 0
    for s in slow:
        s.settimeout(1)
        try:
            closed += s.recv(1024) == b""
        except OSError:
            closed += 1
        s.close()
    assert closed == 10  # the reaper closed every one of them
    served_quickly(router)


def test_a_connection_flood_gets_503_beyond_the_limit_and_the_server_recovers(upstream):
    r = make_router(upstream, limits=Limits(max_connections=4,
                                            header_timeout_s=HEADER_TIMEOUT_S))
    try:
        port = int(r.url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        time.sleep(0.2)
        busy = raw(r, b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2)
        assert busy.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in busy
        time.sleep(1.8)  # the reaper frees the idle connections' slots
        served_quickly(r)
        for s in idle:
            s.close()
    finally:
        r.stop()


def test_one_client_flooding_recommend_is_rate_limited_with_retry_after(upstream):
    r = make_router(upstream, limiter=RateLimiter(rate=5, burst=10))
    try:
        with httpx.Client() as client:
            codes = [client.get(f"{r.url}/recommend/{i}") for i in range(40)]
        limited = [c for c in codes if c.status_code == 429]
        assert 25 <= len(limited) <= 30  # the burst of 10 (and what refilled meanwhile) pass
        assert all(int(c.headers["retry-after"]) >= 1 for c in limited)
        time.sleep(0.5)  # refilled: the same client is served again
        served_quickly(r)
    finally:
        r.stop()


def test_internal_callers_are_exempt_from_the_rate_limit(upstream):
    r = make_router(upstream, limiter=RateLimiter(rate=1, burst=1, exempt=["127.0.0.0/8"]))
    try:
        with httpx.Client() as client:
            assert {client.get(f"{r.url}/recommend/{i}").status_code for i in range(30)} == {200}
    finally:
        r.stop()


def test_rate_limiter_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.allow("a") == pytest.approx(0.5)
    assert limiter.allow("b") == 0.0  # clients have buckets of their own
    now[0] += 0.5
    assert limiter.allow("a") == 0.0 and limiter.allow("a") > 0


@pytest.mark.parametrize("user", ["9" * 19, str(10**30), "1" * 400])
def test_ids_beyond_any_user_go_to_the_fallback_variant_as_written(router, upstream, user):
    resp = httpx.get(f"{router.url}/recommend/{user}")
    assert resp.status_code == 200 and resp.text == "m1,m2"
    assert resp.headers["x-movierec-variant"] == "champion"


def test_assignment_of_an_id_beyond_any_user_is_not_found(router):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    ok = httpx.get(f"{router.url}/admin/assignment/123456789012345678", headers=headers)
    assert ok.status_code == 200 and ok.json()["user_id"] == 123456789012345678
    # 19 digits were cut to 18 and answered for another user; now nobody's
    long = httpx.get(f"{router.url}/admin/assignment/1234567890123456789", headers=headers)
    assert long.status_code == 404
