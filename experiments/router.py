"""The experiment router in front of ``GET /recommend/<user_id>``: locally; on Kubernetes without a
mesh, where every replica follows the weights of one ConfigMap (``weights_source``); or pinned to
one variant per pod when Istio splits the traffic.

Threads and blocking sockets on purpose: one pooled keep-alive connection per thread and
upstream replica is the cheapest proxy path in CPython (well under the 2 ms budget), and
needs no event loop shared with anything else.

Routes: ``/recommend/<uid>`` (header ``x-movierec-variant`` forces a variant and is set on the
answer), ``/healthz``, ``/metrics``, ``GET|POST /admin/weights`` (the canary controller's
handle), ``GET /admin/assignment/<uid>``.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from experiments.assignment import Allocation, bucket
from experiments.metrics import CONTENT_TYPE_LATEST, ExperimentMetrics
from movierec_core.rotating import RotatingFile
from movierec_core.security import AdminAuth, AuthResult, RateLimiter, audit, rate_limiter
from movierec_core.shutdown import StopOnSigterm

log = logging.getLogger("experiments.router")

VARIANT_HEADER = "x-movierec-variant"
MODEL_VERSION_HEADER = "X-Model-Version"
_MAX_USER_ID_DIGITS = 18
_REPLICA_BACKOFF_S = 1.0


@dataclass
class Variant:
    name: str
    weight: float
    urls: list[str]
    _next: int = 0

    def replicas_in_turn(self) -> list[str]:
        """Round-robin: each call starts one replica further; the rest follow for failover."""
        n = len(self.urls)
        if n == 0:
            return []
        start = self._next % n
        self._next += 1
        return self.urls[start:] + self.urls[:start]


@dataclass
class ExperimentState:
    """The live experiment: variants in bucket order, their weights, the allocation."""

    experiment: str
    variants: list[Variant]
    fallback: str = ""
    pinned: str = ""
    # the assignment unit: with pseudonymous ids (movierec_core/pseudonym.py) a user's
    # pseudonym, so that whoever analyses the lake (which holds pseudonyms) finds the same
    # variant; None: the id itself
    unit: Callable[[int], int] | None = field(default=None, repr=False)
    allocation: Allocation = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.allocation = Allocation.from_weights([(v.name, v.weight) for v in self.variants])
        if not self.fallback:
            self.fallback = self.variants[0].name

    def by_name(self, name: str) -> Variant | None:
        for v in self.variants:
            if v.name == name:
                return v
        return None

    def assign(self, user_id: int, override: str | None = None) -> str:
        if self.pinned:
            return self.pinned
        if override and self.by_name(override) is not None:
            return override
        return self.allocation.variant_of(self.experiment, self.unit_of(user_id))

    def unit_of(self, user_id: int) -> int:
        return self.unit(user_id) if self.unit is not None else user_id

    def set_weights(
        self, weights: Mapping[str, float], urls: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Replace all weights (variants not named get 0); ``urls`` adds or re-points
        variants (new ones are appended, so existing bucket ranges keep their order)."""
        urls = urls or {}
        with self.lock:
            variants = [Variant(v.name, v.weight, list(v.urls), v._next) for v in self.variants]
            for name, replica_urls in urls.items():
                existing = next((v for v in variants if v.name == name), None)
                if existing is None:
                    variants.append(Variant(name, 0.0, list(replica_urls)))
                else:
                    existing.urls = list(replica_urls)
            known = {v.name for v in variants}
            unknown = set(weights) - known
            if unknown:
                raise ValueError(f"unknown variants without urls: {sorted(unknown)}")
            for v in variants:
                v.weight = float(weights.get(v.name, 0.0))
            allocation = Allocation.from_weights([(v.name, v.weight) for v in variants])
            self.variants, self.allocation = variants, allocation

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "experiment": self.experiment,
                "pinned": self.pinned,
                "fallback": self.fallback,
                "variants": [
                    {"name": v.name, "weight": v.weight, "urls": list(v.urls),
                     "buckets": [self.allocation.ranges()[v.name].start,
                                 self.allocation.ranges()[v.name].stop]}
                    for v in self.variants
                ],
            }


class JsonLines:
    """Append-only JSON-lines file shared by threads (request log, weights history); rotated
    past ``max_bytes`` so a pod's size-limited /tmp never fills (0: never)."""

    def __init__(self, path: Path | None, max_bytes: int = 0, backups: int = 2) -> None:
        self.path = path
        self._file = RotatingFile(path, max_bytes, backups) if path is not None else None

    def write(self, record: Mapping[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class UpstreamPool:
    """Keep-alive HTTP connections per thread and replica; replicas that refuse connections
    are skipped for a second so a killed replica costs one connect attempt, not one per
    request."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._down_until: dict[str, float] = {}

    def _conn(self, base: str) -> http.client.HTTPConnection:
        conns = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(base)
        if conn is None:
            parts = urlsplit(base)
            conn = http.client.HTTPConnection(
                parts.hostname or "127.0.0.1", parts.port or 80, timeout=self.timeout_s,
            )
            conns[base] = conn
        return conn

    def _drop(self, base: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(base, None)
        if conn is not None:
            conn.close()

    def is_down(self, base: str) -> bool:
        return self._down_until.get(base, 0.0) > time.monotonic()

    def mark_down(self, base: str) -> None:
        self._down_until[base] = time.monotonic() + _REPLICA_BACKOFF_S

    def get(self, base: str, path: str, headers: Mapping[str, str]) -> tuple[int, bytes, str]:
        """(status, body, model version); raises OSError/HTTPException when unreachable."""
        prefix = urlsplit(base).path.rstrip("/")
        for attempt in (0, 1):
            conn = self._conn(base)
            reused = conn.sock is not None
            try:
                if conn.sock is None:
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.request("GET", prefix + path, headers=dict(headers))
                resp = conn.getresponse()
                body = resp.read()
                version = resp.getheader(MODEL_VERSION_HEADER, "") or ""
                if resp.will_close:
                    self._drop(base)
                return resp.status, body, version
            except (OSError, http.client.HTTPException):
                self._drop(base)
                # a pooled connection the server closed meanwhile: one retry on a fresh one
                if attempt == 0 and reused:
                    continue
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self._local.__dict__.get("conns", {}).values():
            conn.close()


@dataclass
class Answer:
    status: int
    body: bytes
    assigned: str
    served_by: str  # the variant that produced the body ("" for a router-made answer)
    model_version: str = ""
    attempts: int = 0


class Router:
    """Routing logic without the HTTP server (unit-testable, used by the handler)."""

    def __init__(
        self, state: ExperimentState, *, timeout_s: float = 0.5, metrics: ExperimentMetrics | None = None,
        request_log: JsonLines | None = None, weights_log: JsonLines | None = None,
    ) -> None:
        self.state = state
        self.pool = UpstreamPool(timeout_s)
        self.metrics = metrics or ExperimentMetrics()
        self.request_log = request_log or JsonLines(None)
        self.weights_log = weights_log or JsonLines(None)
        self._last_good: bytes | None = None
        self._publish_weights(source="start")

    def _publish_weights(self, source: str, event_time: str | None = None,
                         caller: str = "") -> None:
        snap = self.state.snapshot()
        for v in snap["variants"]:
            self.metrics.weight.labels(snap["experiment"], v["name"]).set(v["weight"])
        self.weights_log.write({
            "time": datetime.now(UTC).replace(tzinfo=None).isoformat(),
            "event_time": event_time,
            "experiment": snap["experiment"],
            "source": source,
            **({"caller": caller} if caller else {}),
            "weights": [[v["name"], v["weight"]] for v in snap["variants"]],
        })

    def set_weights(
        self, weights: Mapping[str, float], urls: Mapping[str, Sequence[str]] | None = None,
        source: str = "admin", event_time: str | None = None, caller: str = "",
    ) -> dict[str, Any]:
        self.state.set_weights(weights, urls)
        self._publish_weights(source, event_time, caller)
        return self.state.snapshot()

    def _try_variant(self, name: str, path: str, headers: Mapping[str, str]) -> Answer | None:
        variant = self.state.by_name(name)
        if variant is None:
            return None
        replicas = variant.replicas_in_turn()
        # replicas recently refusing connections go last, not away: all may be down
        replicas.sort(key=self.pool.is_down)
        attempts = 0
        for base in replicas:
            attempts += 1
            try:
                status, body, version = self.pool.get(base, path, headers)
            except (OSError, http.client.HTTPException) as exc:
                log.warning("variant %s replica %s unreachable: %s", name, base, exc)
                self.pool.mark_down(base)
                continue
            if status >= 500:
                log.warning("variant %s replica %s answered %d", name, base, status)
                continue
            return Answer(status, body, name, name, version, attempts)
        return None

    def recommend(self, user_text: str, override: str | None = None) -> Answer:
        start = time.perf_counter()
        if not (user_text.isascii() and user_text.isdigit()):
            answer = Answer(400, b"user id must be a non-negative integer\n", "", "")
            self._account(answer, None, start)
            return answer
        if len(user_text) <= _MAX_USER_ID_DIGITS:
            user_id: int | None = int(user_text)
            assigned = self.state.assign(user_id, override)
            path = f"/recommend/{user_id}"
        else:
            # digits beyond any user id (> 18 of them): no user can have it; the model server
            # answers such an id with the popular list, so the router forwards it as written
            # to the fallback variant rather than refusing it (both answer 200 alike)
            user_id = None
            assigned = self.state.fallback
            path = f"/recommend/{user_text}"
        answer = self._try_variant(assigned, path, {})
        if answer is None and self.state.fallback != assigned:
            answer = self._try_variant(self.state.fallback, path, {})
            if answer is not None:
                answer.assigned = assigned
        if answer is None:
            # every replica of both down: the last good list beats an error for the caller
            if self._last_good is not None:
                answer = Answer(200, self._last_good, assigned, "")
            else:
                answer = Answer(503, b"no variant reachable\n", assigned, "")
        elif answer.status == 200 and answer.served_by == self.state.fallback:
            self._last_good = answer.body
        self._account(answer, user_id, start)
        return answer

    def _account(self, answer: Answer, user_id: int | None, start: float) -> None:
        elapsed = time.perf_counter() - start
        label = answer.served_by or answer.assigned or "none"
        self.metrics.requests.labels(label, str(answer.status)).inc()
        self.metrics.duration.labels(label).observe(elapsed)
        self.request_log.write({
            "time": datetime.now(UTC).replace(tzinfo=None).isoformat(),
            # the log names users as the lake does (their pseudonyms when configured)
            "user_id": None if user_id is None else self.state.unit_of(user_id),
            "assigned": answer.assigned, "variant": answer.served_by,
            "status": answer.status, "ms": round(elapsed * 1000, 3),
            "model_version": answer.model_version,
        })

    def assignment(self, user_id: int) -> dict[str, Any]:
        return {
            "experiment": self.state.experiment, "user_id": user_id,
            "bucket": bucket(self.state.experiment, self.state.unit_of(user_id)),
            "variant": self.state.assign(user_id),
        }

    def close(self) -> None:
        self.request_log.close()
        self.weights_log.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RouterHTTPServer

    def setup(self) -> None:
        self.timeout = self.server.limits.socket_timeout_s  # idle keep-alive connections end
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        # the request line and headers must arrive within header_timeout_s (slowloris): the
        # server's reaper closes the socket of a connection still reading them after that
        self.server.reading_head(self, True)
        try:
            super().handle_one_request()
        finally:
            self.server.reading_head(self, False)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.reading_head(self, False)
        return ok

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the request log and /metrics carry what matters

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
              extra: Mapping[str, str] | None = None) -> None:
        head = [f"HTTP/1.1 {status} {http.client.responses.get(status, '')}",
                f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        for k, v in (extra or {}).items():
            head.append(f"{k}: {v}")
        if self.close_connection:
            head.append("Connection: close")
        # header and body in one write: no Nagle/delayed-ACK stall on keep-alive connections
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode() + b"\n", "application/json")

    def _body_length(self) -> int | None:
        """The request's Content-Length, or None after answering 400/413 (the connection is
        then closed: an unread body would be taken for the next request)."""
        given = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send(411, b"chunked request bodies are not accepted: send Content-Length\n")
            return None
        if given is None:
            return 0
        if not (given.isascii() and given.strip().isdigit()):
            self.close_connection = True
            self._send(400, b"invalid Content-Length\n")
            return None
        length = int(given)
        if length > self.server.limits.max_body_bytes:
            self.close_connection = True
            self._send(413, f"request body over {self.server.limits.max_body_bytes} bytes\n"
                       .encode())
            return None
        return length

    def _admin(self, method: str, path: str) -> AuthResult | None:
        """The caller, when admitted to an admin endpoint; None after answering 401/403. Audited
        here, except an admitted POST: its handler audits it with what it changed."""
        client = self.client_address[0] if self.client_address else None
        result = self.server.auth.admit("router", method, path,
                                        self.headers.get("Authorization"), client,
                                        audit_admitted=method != "POST")
        if result.ok:
            return result
        extra = {"WWW-Authenticate": "Bearer"} if result.status == 401 else None
        self._send(result.status, result.message.encode() + b"\n", extra=extra)
        return None

    def do_GET(self) -> None:  # noqa: N802
        router = self.server.router
        path = self.path.split("?", 1)[0]
        try:
            length = self._body_length()
            if length is None:
                return
            if length:  # a GET with a body: not read, so the connection cannot be reused
                self.close_connection = True
            if path.startswith("/recommend/"):
                limiter = self.server.limiter
                if limiter is not None:
                    wait = limiter.allow(self.client_address[0])
                    if wait > 0:
                        router.metrics.requests.labels("rate_limited", "429").inc()
                        self._send(429, b"too many requests from this client\n",
                                   extra={"Retry-After": str(max(1, math.ceil(wait)))})
                        return
                answer = router.recommend(path[len("/recommend/"):], self.headers.get(VARIANT_HEADER))
                extra = {}
                if answer.served_by or answer.assigned:
                    extra[VARIANT_HEADER] = answer.served_by or answer.assigned
                if answer.model_version:
                    extra[MODEL_VERSION_HEADER] = answer.model_version
                self._send(answer.status, answer.body, extra=extra)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/metrics":
                self._send(200, router.metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/admin/weights":
                if self._admin("GET", path) is not None:
                    self._json(200, router.state.snapshot())
            elif (path.startswith("/admin/assignment/") and path.rsplit("/", 1)[1].isdigit()
                  and len(path.rsplit("/", 1)[1]) <= _MAX_USER_ID_DIGITS):
                if self._admin("GET", path) is not None:
                    self._json(200, router.assignment(int(path.rsplit("/", 1)[1])))
            else:
                self._send(404, b"not found\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802
        router = self.server.router
        path = self.path.split("?", 1)[0]
        if path != "/admin/weights":
            self.close_connection = True  # the body is not read
            self._send(404, b"not found\n")
            return
        length = self._body_length()
        if length is None:
            return
        caller = self._admin("POST", path)
        if caller is None:
            self.close_connection = True
            return
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:  # the client went away mid-body
            self.close_connection = True
            return
        client = self.client_address[0]
        try:
            body = json.loads(raw or b"{}")
            urls = body.get("urls")
            if urls is not None:
                bad = sorted(u for us in dict(urls).values() for u in us
                             if not self.server.upstream_allowed(str(u)))
                if bad:
                    audit("router", "POST", path, caller, 403, client, f"urls refused {bad}")
                    self._send(403, f"upstream urls not allowed: {bad} (allowed hosts: "
                               f"{sorted(self.server.allowed_hosts)})\n".encode())
                    return
            snap = router.set_weights(
                {str(k): float(v) for k, v in body["weights"].items()}, urls,
                source=str(body.get("source", "admin")), event_time=body.get("event_time"),
                caller=caller.caller)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            audit("router", "POST", path, caller, 400, client, f"bad weights: {exc}")
            self._send(400, f"bad weights: {exc}\n".encode())
            return
        audit("router", "POST", path, caller, 200, client,
              "weights " + json.dumps({v["name"]: v["weight"] for v in snap["variants"]}))
        self._json(200, snap)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 65536
    max_connections: int = 256
    socket_timeout_s: float = 15.0
    header_timeout_s: float = 10.0


class RouterHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``limits.max_connections`` of them (beyond: 503 and
    the connection closed at once); a reaper closes connections whose request head is not
    complete within ``limits.header_timeout_s``."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], router: Router, *,
                 auth: AdminAuth | None = None, limiter: RateLimiter | None = None,
                 limits: Limits = Limits(), allowed_hosts: Sequence[str] = ("127.0.0.1",
                                                                            "localhost")) -> None:
        self.router = router
        self.auth = auth or AdminAuth()
        self.limiter = limiter
        self.limits = limits
        self.allowed_hosts = set(allowed_hosts)
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._heads: dict[Any, float] = {}
        self._heads_lock = threading.Lock()
        super().__init__(address, _Handler)
        self._reaper = threading.Thread(target=self._reap, name="head-reaper", daemon=True)
        self._reaper.start()

    def upstream_allowed(self, url: str) -> bool:
        """A variant's URL may be set at runtime only to a configured upstream or to a host on
        the allowlist."""
        if any(url in v.urls for v in self.router.state.variants):
            return True
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.hostname in self.allowed_hosts

    def reading_head(self, handler: Any, reading: bool) -> None:
        with self._heads_lock:
            if reading:
                self._heads[handler] = time.monotonic() + self.limits.header_timeout_s
            else:
                self._heads.pop(handler, None)

    def _reap(self) -> None:
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            with self._heads_lock:
                late = [h for h, deadline in self._heads.items() if deadline < now]
                for h in late:
                    self._heads.pop(h, None)
            for h in late:
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\n"
                                b"Connection: close\r\nRetry-After: 1\r\n\r\nserver busy\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def build_router(cfg: Any, metrics: ExperimentMetrics | None = None,
                 pseudonyms: Any = None) -> Router:
    """A :class:`Router` from the ``experiments`` config node; ``pseudonyms``: the
    :class:`~movierec_core.pseudonym.Pseudonymizer` whose pseudonyms are the assignment unit."""
    variants = [Variant(str(v.name), float(v.weight), [str(u) for u in v.urls]) for v in cfg.variants]
    pinned = str(cfg.variant or "")
    if pinned:
        # pinned (Kubernetes) mode: this pod serves one variant, at model_url when given
        urls = [str(cfg.model_url)] if cfg.model_url else next(
            (v.urls for v in variants if v.name == pinned), [])
        variants = [Variant(pinned, 100.0, urls)]
    state = ExperimentState(str(cfg.name), variants, fallback=str(cfg.fallback_variant or ""),
                            pinned=pinned,
                            unit=pseudonyms.pid if pseudonyms is not None else None)
    request_log = weights_log = None
    if cfg.state_dir:
        base = Path(str(cfg.state_dir)) / str(cfg.name)
        weights_log = JsonLines(base / "weights.jsonl")
        if cfg.request_log:
            request_log = JsonLines(base / "requests.jsonl", int(cfg.request_log_max_bytes))
    return Router(state, timeout_s=float(cfg.upstream_timeout_s), metrics=metrics,
                  request_log=request_log, weights_log=weights_log)


def follow_configmap(router: Router, cfg: Any, api: Any = None) -> Any:
    """Keep the router's weights equal to the ``weights_configmap`` (every replica does)."""
    from experiments.weights_source import ConfigMapWeights, InClusterAPI, WeightsUpdate

    def apply(update: WeightsUpdate) -> None:
        at = update.effective_at.isoformat() if update.effective_at else None
        router.set_weights(update.weights, source=f"configmap:{update.source}", event_time=at)
        log.info("weights from ConfigMap %s (version %s): %s", cfg.weights_configmap,
                 update.version, update.weights)

    watcher = ConfigMapWeights(str(cfg.weights_configmap), apply, api or InClusterAPI(),
                               poll_s=float(cfg.weights_poll_s))
    watcher.start()
    return watcher


def serve(cfg: Any, pseudonyms: Any = None) -> None:
    # Kubernetes stops a pod with SIGTERM: finish in-flight requests and exit 0 at once, rather
    # than being killed at the end of the grace period (30 s per pod on every rollout); the
    # handler goes in before the socket is bound
    stop = StopOnSigterm()
    router = build_router(cfg, pseudonyms=pseudonyms)
    watcher = follow_configmap(router, cfg) if cfg.weights_configmap else None
    server = RouterHTTPServer(
        (str(cfg.host), int(cfg.port)), router,
        auth=AdminAuth.from_environment(str(cfg.admin_token_file or "")),
        limiter=rate_limiter(float(cfg.rate_limit_rps), float(cfg.rate_limit_burst),
                             [str(c) for c in cfg.rate_limit_exempt]),
        limits=Limits(int(cfg.max_body_bytes), int(cfg.max_connections),
                      float(cfg.socket_timeout_s), float(cfg.header_timeout_s)),
        allowed_hosts=[str(h) for h in cfg.allowed_upstream_hosts])
    log.info("router for experiment %s on %s:%d: %s", cfg.name, cfg.host, cfg.port,
             router.state.snapshot())
    try:
        stop.serve(server)
    except KeyboardInterrupt:
        pass
    finally:
        if watcher is not None:
            watcher.stop()
        server.server_close()
        router.close()
