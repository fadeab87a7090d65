"""Routes added to the ModelServer's own FastAPI app (``kserve.model_server.app``):
``GET /recommend/{user_id}`` (EVENTS.md) and the admin endpoints. Same process, port and
middleware as KServe's V1/V2, probes and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from kserve.errors import InvalidInput, ModelNotReady
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route
from timing_asgi import TimingMiddleware

from model_server.metrics import FALLBACKS, REQUEST_DURATION, REQUESTS
from model_server.model import MovierecModel, _request_id, parse_user_id
from movierec_core.registry import RegistryError
from movierec_core.security import AdminAuth, AuthResult, RateLimiter, audit

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"


def mount(app: FastAPI, model: MovierecModel, *, k: int, admin: bool = True,
          auth: AdminAuth | None = None, limiter: RateLimiter | None = None,
          max_body_bytes: int = 262_144, request_timings: bool = True) -> None:
    """Add movierec's routes to ``app`` (call before ``ModelServer.start``): ``/recommend``
    (rate-limited per client with ``limiter``), this model's V1 route, the admin endpoints and
    KServe's repository endpoints behind ``auth``, and a request-body limit on every route.
    ``/recommend`` and V1 requests are answered ahead of the middleware (:class:`FastPaths`);
    ``request_timings=False`` leaves out KServe's timing middleware, whose only output is the
    ``kserve.trace`` log lines (silenced then)."""
    auth = auth or AdminAuth()
    duration = REQUEST_DURATION.labels(endpoint="recommend")
    ok: dict[str, object] = {}  # model version -> its requests_total{status="200"} child

    def count_ok(version: str) -> None:
        child = ok.get(version)
        if child is None:
            child = ok[version] = REQUESTS.labels(endpoint="recommend", status="200",
                                                  model_version=version)
        child.inc()

    async def respond(user_id: str, client: str | None, given_id: str | None
                      ) -> tuple[int, str, dict[str, str]]:
        """``GET /recommend/<user_id>``: (status, plain-text body, headers), for the route and
        for :class:`FastPaths` alike."""
        started = time.perf_counter()
        if limiter is not None:
            wait = limiter.allow(client or "?")
            if wait > 0:
                REQUESTS.labels(endpoint="recommend", status="429", model_version="").inc()
                return 429, "too many requests from this client", {
                    "retry-after": str(max(1, math.ceil(wait)))}
        request_id = _request_id({"x-request-id": given_id} if given_id else None)
        try:
            uid = parse_user_id(user_id)
        except OverflowError:  # digits, but no user can have it: still a list (EVENTS.md)
            uid = None
        except ValueError:
            REQUESTS.labels(endpoint="recommend", status="400", model_version="").inc()
            return 400, (f"invalid user id {user_id[:40]!r}: must be a non-negative "
                         "integer"), {"x-request-id": request_id}
        if model.holder.current is None:
            REQUESTS.labels(endpoint="recommend", status="503", model_version="").inc()
            return 503, "no model version is loaded yet: the registry has none to serve", {
                "x-request-id": request_id, "retry-after": "5"}
        try:
            if uid is None:
                answer = model.holder.current.popular_answer(k)
            else:
                answer = await model.service.recommend(uid, k)
            items = answer.items
            source = answer.source
            version = answer.engine.version if answer.engine is not None else ""
            model.log(request_id, uid if uid is not None else -1, answer, "recommend")
        except Exception:  # /recommend never fails: the service already falls back; belt and braces
            log.exception("unexpected error answering /recommend/%s", uid)
            FALLBACKS.labels(reason="error").inc()
            engine = model.holder.current
            items = engine.fallback(k).items if engine is not None else []
            source = "fallback"
            version = engine.version if engine is not None else ""
        count_ok(version)
        duration.observe(time.perf_counter() - started)
        return 200, ",".join(items), {"x-request-id": request_id, "x-model-version": version,
                                      "x-recommendation-source": source}

    async def recommend(request: Request) -> Response:
        status, body, headers = await respond(
            request.path_params["user_id"], request.client.host if request.client else None,
            request.headers.get("x-request-id"))
        return Response(body, status_code=status, media_type=TEXT, headers=headers)

    async def recommend_missing_id(_request: Request) -> Response:
        REQUESTS.labels(endpoint="recommend", status="400", model_version="").inc()
        return Response("missing user id: use /recommend/<userid>", status_code=400,
                        media_type=TEXT)

    # plain Starlette routes: FastAPI's per-request dependency solving and validation would
    # cost more than ranking does, and a path string needs neither
    app.add_route("/recommend/{user_id}", recommend, methods=["GET"])
    app.add_route("/recommend/", recommend_missing_id, methods=["GET"])
    app.add_route("/recommend", recommend_missing_id, methods=["GET"])

    async def current_model(request: Request) -> JSONResponse:
        caller = _admit(auth, request)
        if not caller.ok:
            return _refusal(caller)
        engine = model.holder.current
        return JSONResponse({"ready": engine is not None,
                             **(engine.provenance if engine is not None else {}),
                             "path": str(engine.path) if engine is not None else None})

    async def reload(request: Request) -> JSONResponse:
        started = time.perf_counter()
        caller = _admit(auth, request, audit_admitted=False)  # audited below, with the swap
        if not caller.ok:
            return _refusal(caller)
        body = await request.body()
        version = None
        if body.strip():
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return _admin(400, {"error": f"request body is not JSON: {exc}"}, started)
            if not isinstance(payload, dict) or not isinstance(payload.get("version", ""), str):
                return _admin(400, {"error": 'expected {"version": "<version or alias>"} or '
                                    "an empty body"}, started)
            version = payload.get("version") or None
        previous = model.holder.current
        try:
            new = await asyncio.to_thread(model.holder.reload, version)
        except (FileNotFoundError, RegistryError) as exc:
            return _admin(404, {"error": f"no such model version: {exc}"}, started)
        except Exception as exc:  # the old version keeps serving
            log.exception("admin reload failed")
            return _admin(500, {"error": f"loading failed, still serving "
                                         f"{getattr(previous, 'version', None)}: {exc}"}, started)
        audit("model_server", "POST", "/admin/reload", caller, 200,
              request.client.host if request.client else None,
              f"{getattr(previous, 'version', None)} -> {new.version}")
        return _admin(200, {"version": new.version,
                            "previous": previous.version if previous is not None else None,
                            "swapped": new is not previous}, started)

    mount_v1(app, model)
    if admin:
        app.add_api_route("/admin/model", current_model, methods=["GET"])
        app.add_api_route("/admin/reload", reload, methods=["POST"])
    # KServe's model repository (load/unload any model): admin only
    app.router.routes.append(_AdminGuard("/v2/repository/{rest:path}", auth))
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    install_fast_paths(app, respond, _V1Predict(model), f"/v1/models/{model.name}:predict",
                       max_body_bytes, without=() if request_timings else (TimingMiddleware,))


def _admit(auth: AdminAuth, request: Request, audit_admitted: bool = True) -> AuthResult:
    return auth.admit("model_server", request.method, request.url.path,
                      request.headers.get("authorization"),
                      request.client.host if request.client else None, audit_admitted)


def _refusal(result: AuthResult) -> JSONResponse:
    """401 (asking for a Bearer token) or 403, with the reason, like KServe's errors."""
    return JSONResponse({"error": result.message}, status_code=result.status,
                        headers={"www-authenticate": "Bearer"} if result.status == 401 else None)


class _AdminGuard(Route):
    """Answers 401/403 for unauthorised calls of the paths it covers; an authorised call does
    not match, so the route behind it (KServe's) serves it. Every call is audited."""

    def __init__(self, path: str, auth: AdminAuth) -> None:
        self.auth = auth
        super().__init__(path, self._refuse,
                         methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])

    def matches(self, scope):
        match, child = super().matches(scope)
        if match is Match.NONE:
            return match, child
        headers = dict(scope.get("headers") or ())
        result = self.auth.admit("model_server", scope.get("method", "?"), scope.get("path", "?"),
                                 headers.get(b"authorization", b"").decode("latin-1"),
                                 (scope.get("client") or (None,))[0])
        if result.ok:
            return Match.NONE, {}
        return Match.FULL, {**child, "auth_result": result}

    async def _refuse(self, request: Request) -> JSONResponse:
        return _refusal(request.scope["auth_result"])


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before the app reads
    or parses it (by its Content-Length; a chunked body is counted as it arrives), so V1/V2
    batches are bounded before JSON decoding."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                if not value.strip().isdigit():
                    await JSONResponse({"error": "invalid Content-Length"}, status_code=400)(
                        scope, receive, send)
                    return
                if int(value) > self.max_bytes:
                    await JSONResponse({"error": f"request body over {self.max_bytes} bytes"},
                                       status_code=413)(scope, receive, send)
                    return
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)


class _V1Predict:
    """``POST /v1/models/<name>:predict`` for this model as a plain ASGI endpoint: the body is
    decoded and the answer encoded here, with the model's own ``preprocess``/``predict`` (the
    same validation and answers), instead of KServe's generic V1 path (FastAPI dependency
    solving, dataplane decode/encode, per-stage histograms: ~130 us per request, more than
    ranking). Errors answer like KServe's handlers: ``{"error": "..."}`` with 400 or 503."""

    def __init__(self, model: MovierecModel) -> None:
        self.model = model

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        headers = dict(request.headers.items())
        model = self.model
        response_headers: dict[str, str] = {}
        try:
            query = await model.preprocess(await request.body(), headers)
            answer = await model.predict(query, headers, response_headers)
            response = Response(orjson.dumps(answer), media_type="application/json",
                                headers=response_headers)
        except InvalidInput as exc:
            response = JSONResponse({"error": str(exc)}, status_code=400)
        except ModelNotReady as exc:
            response = JSONResponse({"error": str(exc)}, status_code=503)
        await response(scope, receive, send)


def _cloud_event(headers) -> bool:
    """A CloudEvent (binary mode: ``ce-*`` headers; structured: its content type), which
    KServe's own V1 route decodes."""
    for key, value in headers:
        if key == b"ce-specversion" or (key == b"content-type"
                                        and value.startswith(b"application/cloudevents")):
            return True
    return False


class _PlainJsonRoute(Route):
    """Matches only requests that are not CloudEvents (``ce-*`` headers or a
    ``application/cloudevents...`` body): those go on to KServe's own V1 route."""

    def matches(self, scope):
        if _cloud_event(scope.get("headers", ())):
            return Match.NONE, {}
        return super().matches(scope)


def mount_v1(app: FastAPI, model: MovierecModel) -> None:
    """Route this model's V1 predict to :class:`_V1Predict`, ahead of KServe's routes (which
    ``ModelServer.start`` adds after this)."""
    app.router.routes.append(_PlainJsonRoute(f"/v1/models/{model.name}:predict",
                                             _V1Predict(model), methods=["POST"]))


def _admin(status: int, content: dict, started: float) -> JSONResponse:
    REQUESTS.labels(endpoint="admin", status=str(status), model_version=content.get(
        "version") or "").inc()
    REQUEST_DURATION.labels(endpoint="admin").observe(time.perf_counter() - started)
    return JSONResponse(content, status_code=status)


def install_validation_handler(app: FastAPI) -> None:
    """Malformed V2 bodies fail FastAPI's schema validation: answer 400 with the reason
    (FastAPI's default is 422), like KServe's own ``InvalidInput``."""

    async def handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()[:5])
        return JSONResponse({"error": f"invalid request body: {problems}"}, status_code=400)

    app.add_exception_handler(RequestValidationError, handler)


_TEXT_TYPE = (b"content-type", TEXT.encode())


class FastPaths:
    """The outermost layer of the app's middleware stack: ``GET /recommend/<id>`` and this
    model's plain-JSON V1 predict (a ``Content-Length`` within the body limit) are answered
    here, ahead of KServe's and FastAPI's middleware and the router. Those layers cost more
    per request than ranking does, and do nothing for these two: the answers, the request
    metrics, the provenance log, the rate limit and the body limit are the routes' own.
    Anything else (another path or method, a body on a GET, a CloudEvent, a chunked or
    malformed body, a root path) goes down the stack as before. An unexpected error answers
    500 ``{"error": ...}`` like KServe's handler (logged)."""

    def __init__(self, app, recommend, v1, v1_path: str, max_body_bytes: int) -> None:
        self.app = app
        self.recommend = recommend
        self.v1 = v1
        self.v1_path = v1_path
        self.max_body_bytes = int(max_body_bytes)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path, method = scope["path"], scope["method"]
            if method == "GET" and path.startswith("/recommend/"):
                user_id = path[11:]
                if user_id and "/" not in user_id and self._bodyless(scope["headers"]):
                    await self._guarded(lambda out: self._recommend(user_id, scope, out), scope,
                                        send)
                    return
            elif (method == "POST" and path == self.v1_path
                  and self._plain_body(scope["headers"])):
                await self._guarded(lambda out: self.v1(scope, receive, out), scope, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _bodyless(headers) -> bool:
        for key, value in headers:
            if (key == b"transfer-encoding" or key == b"content-length"
                    and value.strip() != b"0"):
                return False
        return True

    def _plain_body(self, headers) -> bool:
        length = None
        for key, value in headers:
            if key == b"content-length":
                length = value.strip()
            elif key == b"transfer-encoding":
                return False
        return (length is not None and length.isdigit() and int(length) <= self.max_body_bytes
                and not _cloud_event(headers))

    async def _recommend(self, user_id: str, scope, send) -> None:
        given = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value.decode("latin-1")
                break
        client = scope.get("client")
        status, text, headers = await self.recommend(user_id, client[0] if client else None,
                                                     given)
        body = text.encode()
        raw = [_TEXT_TYPE, (b"content-length", str(len(body)).encode())]
        raw += [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _guarded(answer, scope, send) -> None:
        """``answer(send)``, with a 500 for an error raised before the response started."""
        started = False

        async def tracked(message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await answer(tracked)
        except Exception as exc:
            log.exception("unexpected error on a fast path")
            if started:
                raise
            await JSONResponse({"error": f"{type(exc).__name__} : {exc}"}, status_code=500)(
                scope, None, send)


def install_fast_paths(app: FastAPI, recommend, v1, v1_path: str, max_body_bytes: int, *,
                       without: tuple[type, ...] = ()) -> None:
    """Put :class:`FastPaths` outermost in ``app``'s middleware stack when it is built (at its
    first request; Starlette builds it then), leaving out the middleware classes in
    ``without``."""
    build = app.build_middleware_stack

    def build_stack():
        app.user_middleware = [m for m in app.user_middleware if m.cls not in without]
        return FastPaths(build(), recommend, v1, v1_path, max_body_bytes)

    app.build_middleware_stack = build_stack
