"""The metadata API of EVENTS.md, served from the simulated world (default port 8080).

* ``GET /user/<id>`` → ``{"user_id", "age", "occupation", "gender"}``;
  ``GET /movie/<id>`` → a TMDB-like record with ``cost`` (license fee per play).
* Bulk: ``GET /user/1,2,3`` / ``GET /movie/a+1995,b+2001`` (at most 200 ids, else 400) → a
  JSON list of the records of the ids that exist, in request order (unknown ids are left out).
* Unknown single id → 404 ``{"message": "..."}``. Movie ids go in the path percent-encoded
  where URLs need it (accents); ``+`` is literal.
* Mess, deterministic per id and field (the same record on every call): numbers often as
  strings (``"budget": "45000000"``), optional fields missing or null.
* Rate limit (``rate_limit_per_s`` > 0): beyond it HTTP 429 ``{"message"}`` + ``Retry-After``.
* Faults for drills, switchable at runtime: ``POST /admin/faults`` with any of
  ``{"error_rate": 1.0, "latency_ms": 0, "rate_limit_per_s": 0}`` (500s / slowness / 429s);
  ``GET /admin/faults`` shows them. ``GET /health`` → ``{"status": "ok"}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from simulator.serving import ServerHandle, serve_app
from simulator.world import World

MAX_BULK = 200
# Never missing: what identifies a record. Everything else may be missing or null.
_REQUIRED = {"id", "tmdb_id", "title", "user_id"}
_NUMERIC = {"budget", "revenue", "popularity", "runtime", "vote_average", "vote_count", "cost",
            "tmdb_id", "age"}


def _draw(key: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{salt}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


class Faults:
    """Runtime-switchable faults and the rate limiter (token bucket)."""

    def __init__(self, error_rate: float = 0.0, rate_limit_per_s: float = 0.0,
                 latency_ms: float = 0.0, seed: int = 0) -> None:
        self.error_rate = error_rate
        self.rate_limit_per_s = rate_limit_per_s
        self.latency_ms = latency_ms
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self._tokens = rate_limit_per_s
        self._last = time.monotonic()

    def as_dict(self) -> dict[str, float]:
        return {"error_rate": self.error_rate, "rate_limit_per_s": self.rate_limit_per_s,
                "latency_ms": self.latency_ms}

    def update(self, settings: dict[str, Any]) -> None:
        with self.lock:
            for name in ("error_rate", "rate_limit_per_s", "latency_ms"):
                if name in settings:
                    setattr(self, name, float(settings[name]))
            self._tokens = self.rate_limit_per_s

    def admit(self) -> bool:
        if self.rate_limit_per_s <= 0:
            return True
        with self.lock:
            now = time.monotonic()
            self._tokens = min(self.rate_limit_per_s,
                               self._tokens + (now - self._last) * self.rate_limit_per_s)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def fail(self) -> bool:
        return self.error_rate > 0 and self.rng.random() < self.error_rate


def messy(record: dict[str, Any], key: str, string_number_share: float,
          missing_field_share: float) -> dict[str, Any]:
    """The record as the real API serves it: some numbers as strings, some fields missing/null."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        if name not in _REQUIRED and _draw(key, "missing:" + name) < missing_field_share:
            if _draw(key, "null:" + name) < 0.5:
                out[name] = None
            continue  # left out
        if (name in _NUMERIC and isinstance(value, int | float) and not isinstance(value, bool)
                and _draw(key, "string:" + name) < string_number_share):
            value = str(int(value)) if float(value).is_integer() else str(value)
        out[name] = value
    return out


def create_app(world: World, string_number_share: float = 0.3, missing_field_share: float = 0.05,
               faults: Faults | None = None) -> Starlette:
    faults = faults or Faults()

    def user(raw: str) -> dict[str, Any] | None:
        if not (raw.isascii() and raw.isdigit()):
            return None
        record = world.user_record(int(raw))
        return None if record is None else messy(record, f"user:{raw}", string_number_share,
                                                 missing_field_share)

    def movie(raw: str) -> dict[str, Any] | None:
        idx = world.index_of.get(raw)
        return None if idx is None else messy(world.movie_record(idx), f"movie:{raw}",
                                              string_number_share, missing_field_share)

    async def guarded(request: Request, lookup, what: str) -> JSONResponse:
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if not faults.admit():
            return JSONResponse({"message": "rate limit exceeded, slow down"}, 429,
                                headers={"Retry-After": "1"})
        if faults.fail():
            return JSONResponse({"message": "internal server error"}, 500)
        raw = request.path_params["ids"]
        if "," not in raw:
            record = lookup(raw)
            if record is None:
                return JSONResponse({"message": f"{what} {raw!r} not found"}, 404)
            return JSONResponse(record)
        ids = raw.split(",")
        if len(ids) > MAX_BULK:
            return JSONResponse({"message": f"at most {MAX_BULK} ids per request"}, 400)
        return JSONResponse([r for r in map(lookup, ids) if r is not None])

    async def get_user(request: Request) -> JSONResponse:
        return await guarded(request, user, "user")

    async def get_movie(request: Request) -> JSONResponse:
        return await guarded(request, movie, "movie")

    async def admin_faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                body = await request.json()
                faults.update(body)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"message": f"bad faults body: {exc}"}, 400)
        return JSONResponse(faults.as_dict())

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[
        Route("/user/{ids:path}", get_user),
        Route("/movie/{ids:path}", get_movie),
        Route("/admin/faults", admin_faults, methods=["GET", "POST"]),
        Route("/health", health),
    ])
    app.state.faults = faults
    return app


def serve(world: World, host: str = "127.0.0.1", port: int = 8080, *,
          rate_limit_per_s: float = 0.0, error_rate: float = 0.0,
          string_number_share: float = 0.3, missing_field_share: float = 0.05) -> ServerHandle:
    """Start the metadata API in a background thread (``port=0``: a free port).

    The handle has ``.url`` and ``.stop()``; faults can be switched via ``POST /admin/faults``
    or ``handle.server.config.app.state.faults.update({...})``.
    """
    faults = Faults(error_rate=error_rate, rate_limit_per_s=rate_limit_per_s)
    app = create_app(world, string_number_share, missing_field_share, faults)
    return serve_app(app, host, port, name="metadata-api")
