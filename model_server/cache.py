"""The recommendation cache: a user's answer kept until their events or the model change.

The request path reads the user's recent events from the online store anyway; their
fingerprint (what the ranking would see of them) is the entry's **stamp**. An entry is keyed
by (model version and cost λ, user, k) and served only while the user's stamp is unchanged, so a
new event of theirs (a watched minute, a rating) invalidates it at once: fold-in freshness is
that of the online store, not of a TTL; a hit skips the fold-in, the ranking and a cold
start's metadata lookup, a miss costs no extra read. Entries also expire after
``ttl_s`` (other inputs: costs, demographics) and a new model version misses by its key.
Erased users are answered before the cache is consulted; fallback answers are never cached.

Backends (``model_server.cache``): ``memory`` (an LRU of ``max_entries`` per process; the local
default) and ``redis`` (shared by replicas, ``SETEX`` entries under ``<prefix>cache:``, the
online store's Redis); ``off``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from model_server.metrics import CACHE_LOOKUPS


@dataclass(frozen=True, slots=True)
class Cached:
    stamp: Any  # the fingerprint of the user's recent events when computed
    items: tuple[str, ...]  # the engine's own strings: an entry costs ~0.5 KB
    source: str
    cold_start: bool
    at: float  # monotonic (memory) / wall clock (redis) time of the entry


class MemoryCache:
    """An LRU of at most ``max_entries``, entries at most ``ttl_s`` old. Thread-safe."""

    def __init__(self, max_entries: int = 20_000, ttl_s: float = 300.0) -> None:
        self.max_entries, self.ttl_s = int(max_entries), float(ttl_s)
        self._entries: OrderedDict[tuple, Cached] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Cached | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if time.monotonic() - entry.at > self.ttl_s:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple, stamp: int | None, items: list[str], source: str,
            cold_start: bool) -> None:
        with self._lock:
            self._entries[key] = Cached(stamp, tuple(items), source, cold_start,
                                        time.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache:
    """Entries shared by every replica: ``<prefix>cache:<version>:<user>:<k>`` → JSON, with
    ``SETEX ttl_s``."""

    def __init__(self, client: Any, prefix: str = "mr:", ttl_s: float = 300.0) -> None:
        self._redis, self.prefix, self.ttl_s = client, prefix, max(1, int(ttl_s))

    def _key(self, key: tuple) -> str:
        return f"{self.prefix}cache:" + ":".join(map(str, key))

    def get(self, key: tuple) -> Cached | None:
        raw = self._redis.get(self._key(key))
        if raw is None:
            return None
        v = json.loads(raw)
        return Cached(v["stamp"], v["items"], v["source"], v["cold_start"], v["at"])

    def put(self, key: tuple, stamp: int | None, items: list[str], source: str,
            cold_start: bool) -> None:
        self._redis.setex(self._key(key), self.ttl_s, json.dumps(
            {"stamp": stamp, "items": items, "source": source, "cold_start": cold_start,
             "at": time.time()}))


class RecommendationCache:
    """What :class:`model_server.service.Recommendations` asks: ``lookup`` then ``store``."""

    def __init__(self, backend: MemoryCache | RedisCache) -> None:
        self.backend = backend
        self.hits = self.misses = self.stale = 0
        # the counters' children once: labels() takes a lock and builds a key on every call
        self._counted = {result: CACHE_LOOKUPS.labels(result) for result in
                         ("hit", "miss", "stale")}

    def lookup(self, version: str, user: int, k: int, stamp: int | None) -> Cached | None:
        entry = self.backend.get((version, user, k))
        if entry is None:
            self.misses += 1
            self._counted["miss"].inc()
            return None
        if entry.stamp != stamp:  # the user has new events: recompute
            self.stale += 1
            self._counted["stale"].inc()
            return None
        self.hits += 1
        self._counted["hit"].inc()
        return entry

    def store(self, version: str, user: int, k: int, stamp: int | None, items: list[str],
              source: str, cold_start: bool) -> None:
        self.backend.put((version, user, k), stamp, items, source, cold_start)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses + self.stale
        return self.hits / total if total else float("nan")


def make_cache(kind: str, *, max_entries: int, ttl_s: float,
               redis_client: Any = None, prefix: str = "mr:") -> RecommendationCache | None:
    kind = str(kind).lower()
    if kind == "off":
        return None
    if kind == "memory":
        return RecommendationCache(MemoryCache(max_entries, ttl_s))
    if kind == "redis":
        if redis_client is None:
            raise ValueError("model_server.cache=redis needs the Redis online store "
                             "(data.online_store_backend=redis)")
        return RecommendationCache(RedisCache(redis_client, prefix, ttl_s))
    raise ValueError(f"model_server.cache must be off, memory or redis, not {kind!r}")
