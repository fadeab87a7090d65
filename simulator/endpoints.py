"""Built-in ``/recommend`` endpoints (oracle, popularity, random), usable as the simulator's target.

``GET /recommend/<uid>`` → 200 ``text/plain``, up to k ids joined by ``,`` (EVENTS.md); a user
id that is not a non-negative integer → 400 with a short plain-text reason. Unknown users
(new accounts not yet in this process's world) get the popularity list.

Served from the same process as the simulation (``seen=sim.seen_ids``), the oracle skips what
each user already watched; standalone (``python -m simulator endpoint``) it serves the static
true top-k.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from simulator.recommenders import Seen, builtin
from simulator.serving import ServerHandle, serve_app
from simulator.world import World


def create_app(world: World, kind: str = "oracle", k: int = 20, seen: Seen | None = None,
               seed: int = 0) -> Starlette:
    recommender = builtin(kind, world, k, seen, seed)

    async def recommend(request: Request) -> PlainTextResponse:
        raw = request.path_params["user_id"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            return PlainTextResponse("user id must be a non-negative integer", 400)
        return PlainTextResponse(",".join(recommender.top_ids(int(raw))))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "kind": kind})

    return Starlette(routes=[Route("/recommend/{user_id:path}", recommend),
                             Route("/health", health)])


def serve(world: World, kind: str = "oracle", host: str = "127.0.0.1", port: int = 8099,
          k: int = 20, seen: Seen | None = None, seed: int = 0) -> ServerHandle:
    """Serve a built-in endpoint in a background thread; ``port=0`` picks a free port."""
    return serve_app(create_app(world, kind, k, seen, seed), host, port, name=f"endpoint-{kind}")
