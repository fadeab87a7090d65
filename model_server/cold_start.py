"""Demographics of a user from the metadata API, within a small time budget.

``GET /user/<id>`` (EVENTS.md) → (age, gender, occupation), which the bundle's cold-start
model maps to its segment lists. Answers are cached
(also "unknown", for a while); after a failure the client backs off so that a metadata outage
costs nothing per request: serving then falls back to global popularity.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import httpx

log = logging.getLogger(__name__)

Demographics = tuple[Any, Any, Any]  # (age, gender, occupation) as the API gives them
_NEGATIVE_TTL_S = 30.0


class UserDemographics:
    """Async, cached, budgeted lookups of a user's demographics."""

    def __init__(self, base_url: str, *, timeout_s: float = 0.06, cache_size: int = 100_000,
                 backoff_s: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self._base_url = base_url.rstrip("/")
        self._transport = transport
        self._timeout_s = timeout_s
        self._cache: OrderedDict[int, tuple[Demographics | None, float]] = OrderedDict()
        self._cache_size = cache_size
        self._backoff_s = backoff_s
        self._down_until = 0.0
        self._inflight: dict[int, asyncio.Task] = {}
        self._client: httpx.AsyncClient | None = None

    def cached(self, user_id: int) -> tuple[bool, Demographics | None]:
        """(hit, demographics) from the cache only."""
        entry = self._cache.get(user_id)
        if entry is None:
            return False, None
        demographics, expires = entry
        if expires and time.monotonic() > expires:
            self._cache.pop(user_id, None)
            return False, None
        self._cache.move_to_end(user_id)
        return True, demographics

    async def lookup(self, user_id: int, budget_s: float) -> Demographics | None:
        """The user's demographics, or None when unknown, slow (over budget) or the API is
        down."""
        hit, demographics = self.cached(user_id)
        if hit:
            return demographics
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

    async def _fetch(self, user_id: int) -> Demographics | None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=max(self._timeout_s * 10, 1.0),
                                             transport=self._transport)
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
            demographics = (record.get("age"), record.get("gender"), record.get("occupation"))
        except Exception:  # malformed record: treat as unknown, do not retry it every request
            # no id in the log: the logs hold no user ids (docs/security.md)
            log.warning("unusable metadata for a user from the metadata API", exc_info=True)
            demographics = None
        self._remember(user_id, demographics,
                       0.0 if demographics is not None else _NEGATIVE_TTL_S)
        return demographics

    def _remember(self, user_id: int, demographics: Demographics | None, ttl_s: float) -> None:
        self._cache[user_id] = (demographics, time.monotonic() + ttl_s if ttl_s else 0.0)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
