"""``model_server.app.FastPaths``: which requests are answered ahead of the middleware and which
go down the stack, the answers' exact bytes, a 500 for an error, and the timing middleware
left out only when asked (the whole server is exercised in test_server_process.py and
test_server_security.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from timing_asgi import TimingMiddleware
from timing_asgi.interfaces import TimingClient
from timing_asgi.utils import PathToName

from model_server.app import install_fast_paths

V1 = "/v1/models/movierec:predict"


class Timings(TimingClient):
    def __init__(self) -> None:
        self.names: list[str] = []

    def timing(self, metric_name, timing, tags) -> None:
        self.names.append(metric_name)


def make_app(*, without: tuple[type, ...] = (), fail: bool = False):
    """A Starlette app whose stack answers ``stack <path>``, behind the fast paths."""
    seen: list[tuple[str, str | None, str | None]] = []

    async def stack(request):
        return PlainTextResponse(f"stack {request.url.path}")

    async def recommend(user_id, client, given_id):
        if fail:
            raise RuntimeError("boom")
        seen.append((user_id, client, given_id))
        return 200, f"items for {user_id}", {"x-request-id": given_id or "generated",
                                              "x-model-version": "v7"}

    async def v1(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await PlainTextResponse(f"v1 {len(body)}")(scope, receive, send)

    timings = Timings()
    app = Starlette(routes=[Route("/{rest:path}", stack, methods=["GET", "POST", "HEAD"])],
                    middleware=[Middleware(TimingMiddleware, client=timings,
                                           metric_namer=PathToName("t"))])
    install_fast_paths(app, recommend, v1, V1, max_body_bytes=100, without=without)
    return app, seen, timings


def call(app, method: str, path: str, **kw) -> httpx.Response:
    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, **kw)

    return asyncio.run(request())


def test_recommend_is_answered_ahead_of_the_stack_with_its_headers() -> None:
    app, seen, timings = make_app()
    r = call(app, "GET", "/recommend/42", headers={"x-request-id": "trace-1"})
    assert r.status_code == 200 and r.text == "items for 42"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == str(len("items for 42"))
    assert r.headers["x-request-id"] == "trace-1" and r.headers["x-model-version"] == "v7"
    assert seen == [("42", "10.1.2.3", "trace-1")]
    assert timings.names == []  # the stack (and its timing middleware) never saw it


@pytest.mark.parametrize("method,path,kw", [
    ("GET", "/recommend/", {}),  # no id: the route's 400
    ("GET", "/recommend/1/2", {}),
    ("GET", "/recommendations/1", {}),
    ("HEAD", "/recommend/1", {}),
    ("GET", "/recommend/1", {"content": b"a body"}),  # the body limit's business
    ("POST", "/v1/models/other:predict", {"content": b"{}"}),
    ("POST", V1, {"content": b"x" * 101}),  # over the limit: the stack answers 413
    ("POST", V1, {"content": "chunked"}),  # no Content-Length: counted by the stack
    ("POST", V1, {"content": b"{}", "headers": {"ce-specversion": "1.0"}}),  # a CloudEvent
    ("POST", V1, {"content": b"{}",
                  "headers": {"content-type": "application/cloudevents+json"}}),
])
def test_anything_else_goes_down_the_stack(method: str, path: str, kw: dict) -> None:
    app, seen, _ = make_app()
    if kw.get("content") == "chunked":
        async def chunks():
            yield b"{"
            yield b"}"

        kw = {"content": chunks()}
    r = call(app, method, path, **kw)
    assert r.status_code == 200 and seen == []
    if method != "HEAD":
        assert r.text == f"stack {path}"


def test_a_plain_v1_body_within_the_limit_is_answered_ahead() -> None:
    app, _, timings = make_app()
    body = b'{"instances": []}'
    r = call(app, "POST", V1, content=body)
    assert r.status_code == 200 and r.text == f"v1 {len(body)}"
    assert timings.names == []


def test_an_error_on_a_fast_path_is_a_500_with_the_reason() -> None:
    app, _, _ = make_app(fail=True)
    r = call(app, "GET", "/recommend/1")
    assert r.status_code == 500 and r.json() == {"error": "RuntimeError : boom"}


def test_the_timing_middleware_is_left_out_only_when_asked() -> None:
    kept, _, timings = make_app()
    call(kept, "GET", "/other")
    assert timings.names  # wall and CPU time of the request
    dropped, _, timings = make_app(without=(TimingMiddleware,))
    r = call(dropped, "GET", "/other")
    assert r.text == "stack /other" and timings.names == []
