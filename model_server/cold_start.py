"""Demographic segment of a user from the metadata API, within a small time budget.

``GET /user/<id>`` (EVENTS.md) → age, gender, occupation → ``segment_of``. Answers are cached
(also "unknown", for a while); after a failure the client backs off so that a metadata outage
costs nothing per request: serving then falls back to global popularity.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger(__name__)

SegmentOf = Callable[[Any, Any, Any], str]
_NEGATIVE_TTL_S = 30.0


class UserSegments:
    """Async, cached, budgeted lookups of a user's segment."""

    def __init__(self, base_url: str, segment_of: SegmentOf, *, timeout_s: float = 0.06,
                 cache_size: int = 100_000, backoff_s: float = 5.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._segment_of = segment_of
        self._timeout_s = timeout_s
        self._cache: OrderedDict[int, tuple[str | None, float]] = OrderedDict()
        self._cache_size = cache_size
        self._backoff_s = backoff_s
        self._down_until = 0.0
        self._inflight: dict[int, asyncio.Task] = {}
        self._client: httpx.AsyncClient | None = None

    def cached(self, user_id: int) -> tuple[bool, str | None]:
        """(hit, segment) from the cache only."""
        entry = self._cache.get(user_id)
        if entry is None:
            return False, None
        segment, expires = entry
        if expires and time.monotonic() > expires:
            self._cache.pop(user_id, None)
            return False, None
        self._cache.move_to_end(user_id)
        return True, segment

    async def segment(self, user_id: int, budget_s: float) -> str | None:
        """The user's segment, or None when unknown, slow (over budget) or the API is down."""
        hit, segment = self.cached(user_id)
        if hit:
            return segment
        if time.monotonic() < self._down_until:
            return None
        task = self._inflight.get(user_id)
        if task is None:
            task = asyncio.ensure_future(self._fetch(user_id))
            self._inflight[user_id] = task
            task.add_done_callback(lambda _t, u=user_id: self._inflight.pop(u, None))
        try:
            # shield: a slow answer still lands in the cache for the user's next request
            return await asyncio.wait_for(asyncio.shield(task), min(budget_s, self._timeout_s))
        except TimeoutError:
            return None

    async def _fetch(self, user_id: int) -> str | None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=max(self._timeout_s * 10, 1.0))
        try:
            response = await self._client.get(f"{self._base_url}/user/{user_id}")
        except httpx.HTTPError as exc:
            self._down_until = time.monotonic() + self._backoff_s
            log.warning("metadata API unreachable (%s); cold starts use popularity for %.0f s",
                        exc, self._backoff_s)
            return None
        if response.status_code == 404:
            self._remember(user_id, None, _NEGATIVE_TTL_S)
            return None
        if response.status_code != 200:
            if response.status_code >= 500 or response.status_code == 429:
                self._down_until = time.monotonic() + self._backoff_s
            return None
        try:
            record = response.json()
            segment = self._segment_of(record.get("age"), record.get("gender"),
                                       record.get("occupation"))
        except Exception:  # malformed record: treat as unknown, do not retry it every request
            log.warning("unusable metadata for user %s", user_id, exc_info=True)
            segment = None
        self._remember(user_id, segment, 0.0 if segment is not None else _NEGATIVE_TTL_S)
        return segment

    def _remember(self, user_id: int, segment: str | None, ttl_s: float) -> None:
        self._cache[user_id] = (segment, time.monotonic() + ttl_s if ttl_s else 0.0)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
