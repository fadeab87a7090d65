"""The request path shared by ``/recommend`` and V1/V2: deadline, fallback, cold start, metrics.

Ranking (online-store read, fold-in, scoring) takes well under a millisecond, so by default it
runs inline on the event loop: a thread hop per request costs more than the ranking and, under
load, GIL hand-offs between the loop and ranking threads stretch the latency tail. Inline, the
deadline is checked after the store read and around the (asynchronous) metadata lookup; with
``model_server.rank_threads > 0`` ranking runs on a thread pool instead and a slow store is cut
off at the deadline. Either way an error or a blown deadline answers the fallback list (global
popularity) and counts it. Nothing on this path raises.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from model_server.cache import RecommendationCache
from model_server.cold_start import UserDemographics
from model_server.engine import Answer, ColdStart, Engine
from model_server.metrics import COLD_STARTS, FALLBACKS, FOLD_INS
from model_server.swap import ModelHolder
from movierec_core.pseudonym import KeyRing

log = logging.getLogger(__name__)


_NO_STAMP = object()
# answers worth keeping: ranked ones and the demographic segment's list (a popularity answer
# may be one for want of demographics, and costs nothing to recompute)
_CACHED_SOURCES = frozenset({"model", "fold_in", "segment"})


class UserIds(NamedTuple):
    raw: int  # as the request named the user: the metadata API's key
    model: int  # the model's (a pseudonym under the bundle's key, or raw)
    store: int  # the online store's and the erased set's (under the current key, or raw)


@dataclass
class _Request:
    """One request's way through the service: its ids, k, the cache stamp, a hit."""

    ids: UserIds
    k: int
    stamp: Any = _NO_STAMP
    hit: bool = False


class Recommendations:
    """``await recommend(user_id, k)`` → an :class:`Answer`, always."""

    def __init__(self, holder: ModelHolder[Engine], *, store_factory: Callable[[], Any] | None,
                 demographics: UserDemographics | None, deadline_ms: float, cost_lambda: float,
                 fold_in: bool, history_limit: int, threads: int = 4,
                 erased_poll_s: float = 1.0, pseudonyms: KeyRing | None = None,
                 cache: RecommendationCache | None = None, clock: str = "events") -> None:
        """``clock``: the instant a learned ranker's time features and the online store's events'
        ages (a bundle trained with recency) are computed at: ``events``,
        the online store's event-time watermark (polled with the erased users; the wall clock
        until there is one), or ``wall``."""
        if clock not in ("events", "wall"):
            raise ValueError(f"serving.clock must be events or wall, not {clock!r}")
        self.holder = holder
        self.clock = clock
        self.watermark: datetime | None = None
        self.cache = cache
        # pseudonymous ids (movierec_core/pseudonym.py): a request's id is turned into its
        # pseudonym here, for the online store (current key) and the model (its own key)
        self._ring = pseudonyms if pseudonyms else None
        self._store_factory = store_factory
        self._demographics = demographics
        self._deadline_s = deadline_ms / 1000.0
        self.cost_lambda = cost_lambda
        self.fold_in = fold_in
        self._history_limit = history_limit
        self._executor = (ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rank")
                          if threads > 0 else None)
        self._local = threading.local()
        self._store_warned = 0.0
        # users erased from the platform (ingestor/erase.py): answered without
        # personalisation, whatever the model learned of them; polled from the online store
        self.erased: frozenset[int] = frozenset()
        self._closed = threading.Event()
        self._erased_poll_s = erased_poll_s
        if store_factory is not None and erased_poll_s > 0:
            threading.Thread(target=self._poll_erased, name="erased-users", daemon=True).start()

    async def recommend(self, user_id: int, k: int, engine: Engine | None = None) -> Answer:
        engine = engine or self.holder.current
        if engine is None:  # not loaded yet: KServe does not route here before load()
            FALLBACKS.labels(reason="not_ready").inc()
            return Answer([], "fallback", None)
        ids = self.ids(user_id, engine)
        if ids.store in self.erased or ids.model in self.erased:
            return engine.popular_answer(k)
        started = time.monotonic()
        state = _Request(ids, k)
        try:
            if self._executor is None:
                answer = await self._rank_inline(engine, state, started)
            else:
                answer = await asyncio.wait_for(self._rank(engine, state, started),
                                                self._deadline_s)
        except TimeoutError:
            FALLBACKS.labels(reason="deadline").inc()
            return engine.fallback(k)
        except Exception:
            log.exception("ranking failed for user %s; answering the fallback list", ids.store)
            FALLBACKS.labels(reason="error").inc()
            return engine.fallback(k)
        if state.hit:
            return answer
        if answer.source == "fold_in":
            FOLD_INS.inc()
        if answer.cold_start:
            COLD_STARTS.labels(source=answer.source).inc()
        if state.stamp is not _NO_STAMP and answer.source in _CACHED_SOURCES:
            self.cache.store(self._cache_key(engine), ids.store, k, state.stamp, answer.items,
                             answer.source, answer.cold_start)
        return answer

    def _cache_key(self, engine: Engine) -> str:
        key = getattr(engine, "_cache_key", None)  # one string per engine, not per entry
        if key is None:
            key = engine._cache_key = f"{engine.version}@{self.cost_lambda:g}"
        return key

    def ids(self, user_id: int, engine: Engine) -> UserIds:
        """A request's user id as each store knows it (the same without pseudonyms)."""
        ring = self._ring
        if ring is None:
            return UserIds(user_id, user_id, user_id)
        store = ring.current.pid(user_id)
        key = engine.pseudonym_key_id
        model = (store if key == ring.current_id else
                 ring.get(key).pid(user_id) if key is not None else user_id)
        return UserIds(user_id, model, store)

    async def _rank_inline(self, engine: Engine, state: _Request, started: float) -> Answer:
        result = self._rank_sync(engine, state, started)
        if isinstance(result, Answer):
            return result
        return await self._cold_start(engine, state.ids, state.k, started, result)

    async def _rank(self, engine: Engine, state: _Request, started: float) -> Answer:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, self._rank_sync, engine, state,
                                            None)
        if isinstance(result, Answer):
            return result
        return await self._cold_start(engine, state.ids, state.k, started, result)

    async def _cold_start(self, engine: Engine, ids: UserIds, k: int, started: float,
                          unknown: ColdStart) -> Answer:
        demographics = None
        if self._demographics is not None:  # the metadata API knows users by their ids
            budget = self._deadline_s - (time.monotonic() - started) - 0.005
            if budget > 0:
                demographics = await self._demographics.lookup(ids.raw, budget)
        return engine.cold_start(demographics, k, unknown)

    def _rank_sync(self, engine: Engine, state: _Request,
                   started: float | None) -> Answer | ColdStart:
        """The online-store read, then the cache (keyed by what was read) or the ranking.
        ``started``: check the deadline after the read (inline; a thread is cut off by
        ``wait_for`` instead)."""
        ids = state.ids
        interactions = self._interactions(ids.store)
        if started is not None and time.monotonic() - started > self._deadline_s:
            raise TimeoutError("online store read exceeded the deadline")
        if self.cache is not None and interactions is not None:
            # the stamp: exactly what the ranking would see of the user's recent events
            state.stamp = hash(tuple(interactions))
            hit = self.cache.lookup(self._cache_key(engine), ids.store, state.k, state.stamp)
            if hit is not None:
                state.hit = True
                return Answer(list(hit.items), hit.source, engine, hit.cold_start)
        return engine.rank(ids.model, interactions or [], state.k, cost_lambda=self.cost_lambda,
                           fold_in=self.fold_in,
                           now=self.watermark)

    def _interactions(self, user_id: int) -> list | None:
        """The user's recent events, newest first; None when the store cannot be read (the
        answer is then ranked without them, and neither read from nor kept in the cache)."""
        interactions: list | None = []
        if self._store_factory is not None:
            try:
                interactions = self._store().interactions(user_id, self._history_limit)
            except Exception:  # an online-store outage degrades freshness, not the answer
                interactions = None
                self._local.store = None
                now = time.monotonic()
                if now - self._store_warned > 10.0:
                    self._store_warned = now
                    log.warning("online store read failed; ranking without recent events",
                                exc_info=True)
        return interactions

    def _store(self) -> Any:
        """One online-store handle per ranking thread (SQLite connections are per thread)."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = self._store_factory()
        return store

    def _poll_erased(self) -> None:
        store, warned = None, 0.0
        while True:
            try:
                store = store or self._store_factory()
                erased = getattr(store, "erased_users", None)
                if erased is not None:
                    self.erased = frozenset(erased())
                if self.clock == "events" and hasattr(store, "watermark"):
                    self.watermark = store.watermark()
            except Exception:  # the store is down: keep the last set, try again
                store = None
                if time.monotonic() - warned > 60:
                    warned = time.monotonic()
                    log.warning("reading the erased users from the online store failed",
                                exc_info=True)
            if self._closed.wait(self._erased_poll_s):
                return

    def close(self) -> None:
        self._closed.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
