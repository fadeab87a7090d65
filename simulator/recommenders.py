"""Who the simulated service asks for lists: built-in recommenders (oracle, popularity, random)
called in-process, or any ``/recommend`` URL over HTTP (what the real service does).

Every recommender answers a batch of user ids with one :class:`Response` each, exactly what the
``recommendation request`` line logs: status 200 with parsed ids, or status 0 / 500 with an
error text, and the response time in ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import numpy as np

from movierec_core.events import is_valid_movie_id
from simulator.world import World

TIMEOUT_ERROR = "java.net.SocketTimeoutException: Read timed out"
REFUSED_ERROR = "java.net.ConnectException: Connection refused"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    movie_ids: tuple[str, ...]
    error: str
    response_ms: int
    server: str = ""  # who answered, when it differs per user (SplitRecommender)


class Recommender(Protocol):
    server: str

    def recommend(self, user_ids: Sequence[int]) -> list[Response]: ...


# What a user has watched (the simulation's state): lets the oracle skip it.
Seen = Callable[[int], Collection[int]]


class OracleRecommender:
    """The true top-k by hidden affinity, skipping movies the user already watched."""

    def __init__(self, world: World, k: int = 20, seen: Seen | None = None,
                 server: str = "oracle") -> None:
        self.world, self.k, self.seen, self.server = world, k, seen, server

    def top_ids(self, user_id: int) -> list[str]:
        if not 0 <= user_id < self.world.n_users:
            return [self.world.movie_ids[i] for i in self.world.popular_top_k(self.k)]
        exclude = self.seen(user_id) if self.seen is not None else ()
        ids = self.world.movie_ids
        return [ids[i] for i in self.world.true_top_k(user_id, self.k, exclude)]

    def recommend(self, user_ids: Sequence[int]) -> list[Response]:
        return [Response(200, tuple(self.top_ids(int(u))), "", 4 + int(u) % 7) for u in user_ids]


class PopularityRecommender:
    """Global popularity, the same list for everyone."""

    def __init__(self, world: World, k: int = 20, server: str = "popularity") -> None:
        self.world, self.k, self.server = world, k, server

    def top_ids(self, user_id: int) -> list[str]:
        return [self.world.movie_ids[i] for i in self.world.popular_top_k(self.k)]

    def recommend(self, user_ids: Sequence[int]) -> list[Response]:
        ids = tuple(self.top_ids(0))
        return [Response(200, ids, "", 2 + int(u) % 5) for u in user_ids]


class RandomRecommender:
    """Uniformly random movies (deterministic per seed and call order)."""

    def __init__(self, world: World, k: int = 20, seed: int = 0, server: str = "random") -> None:
        self.world, self.k, self.server = world, k, server
        self.rng = np.random.default_rng(seed)

    def top_ids(self, user_id: int) -> list[str]:
        picks = self.rng.choice(self.world.n_movies, self.k, replace=False)
        return [self.world.movie_ids[i] for i in picks]

    def recommend(self, user_ids: Sequence[int]) -> list[Response]:
        return [Response(200, tuple(self.top_ids(int(u))), "", 2 + int(u) % 5) for u in user_ids]


def builtin(kind: str, world: World, k: int = 20, seen: Seen | None = None,
            seed: int = 0) -> OracleRecommender | PopularityRecommender | RandomRecommender:
    match kind:
        case "oracle":
            return OracleRecommender(world, k, seen)
        case "popularity":
            return PopularityRecommender(world, k)
        case "random":
            return RandomRecommender(world, k, seed)
    raise ValueError(f"unknown recommender kind {kind!r} (oracle | popularity | random)")


class SplitRecommender:
    """Users split into fixed arms by a hash of their id (A/B/n under identical conditions);
    each arm's requests are logged with that arm's server name."""

    def __init__(self, arms: Sequence[tuple[float, Recommender]], seed: int = 0) -> None:
        weights = np.array([w for w, _ in arms], np.float64)
        self.bounds = np.cumsum(weights / weights.sum())
        self.arms = [r for _, r in arms]
        self.seed = seed
        self.server = "split"

    def arm_of(self, user_ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(user_ids, np.uint64)
        mixed = (ids + np.uint64(self.seed)) * np.uint64(0x9E3779B97F4A7C15)
        unit = (mixed >> np.uint64(11)).astype(np.float64) / 2.0**53
        return np.minimum(np.searchsorted(self.bounds, unit, side="right"), len(self.arms) - 1)

    def recommend(self, user_ids: Sequence[int]) -> list[Response]:
        arms = self.arm_of(user_ids)
        out: list[Response | None] = [None] * len(user_ids)
        for a, recommender in enumerate(self.arms):
            rows = np.flatnonzero(arms == a)
            if len(rows):
                answers = recommender.recommend([int(user_ids[i]) for i in rows])
                for i, r in zip(rows.tolist(), answers, strict=True):
                    out[i] = Response(r.status, r.movie_ids, r.error, r.response_ms,
                                      r.server or recommender.server)
        return out  # type: ignore[return-value]


def parse_list(body: str) -> tuple[str, ...]:
    """Ids from a /recommend body as the caller parses them: split on ',', keep valid ids."""
    return tuple(part for part in (p.strip() for p in body.strip().split(","))
                 if part and is_valid_movie_id(part))


class HttpRecommender:
    """``GET <url>/recommend/<uid>`` with the caller's deadline, concurrently for a batch."""

    def __init__(self, url: str, timeout_ms: int = 600, concurrency: int = 8,
                 server: str = "") -> None:
        self.base = url.rstrip("/")
        parts = urlsplit(self.base)
        self.server = server or parts.netloc
        self.timeout_ms = timeout_ms
        self.client = httpx.Client(timeout=timeout_ms / 1000,
                                   limits=httpx.Limits(max_connections=concurrency))
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="recommend")

    def _one(self, user_id: int) -> Response:
        started = time.perf_counter()
        try:
            reply = self.client.get(f"{self.base}/recommend/{user_id}")
        except httpx.TimeoutException:
            return Response(0, (), TIMEOUT_ERROR, self.timeout_ms)
        except httpx.HTTPError:
            ms = int((time.perf_counter() - started) * 1000)
            return Response(0, (), REFUSED_ERROR, ms)
        ms = int((time.perf_counter() - started) * 1000)
        if ms > self.timeout_ms:  # a late answer counts as a failure
            return Response(0, (), TIMEOUT_ERROR, self.timeout_ms)
        if reply.status_code != 200:
            return Response(reply.status_code, (), f"java.io.IOException: Server returned HTTP "
                            f"response code: {reply.status_code}", ms)
        return Response(200, parse_list(reply.text), "", ms)

    def recommend(self, user_ids: Sequence[int]) -> list[Response]:
        if len(user_ids) <= 1:
            return [self._one(int(u)) for u in user_ids]
        return list(self.pool.map(self._one, [int(u) for u in user_ids]))

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.client.close()
