"""The recommendation cache (issue 22): a repeated request is answered from the cache, a new
event of the user's invalidates their entry at once (fold-in freshness unchanged), erased users
and fallback answers never come from it, a new model version misses, the LRU and TTL bound it."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from model_server.cache import MemoryCache, RecommendationCache, make_cache
from model_server.engine import Engine
from model_server.metrics import CACHE_LOOKUPS
from model_server.service import Recommendations
from model_server.swap import ModelHolder
from movierec_core.events import WatchMinute
from movierec_core.models.testing import tiny_bundle
from movierec_core.online_store import SqliteOnlineStore

USER = 1070  # row 7 of the tiny bundle


@pytest.fixture
def setup(tmp_path: Path):
    bundle = tiny_bundle(tmp_path / "b")
    holder: ModelHolder[Engine] = ModelHolder(load=Engine.load, resolve=lambda ref: bundle)
    holder.load_initial()
    store = SqliteOnlineStore(tmp_path / "online.sqlite")
    cache = make_cache("memory", max_entries=100, ttl_s=60)
    service = Recommendations(holder, store_factory=lambda: store, demographics=None,
                              deadline_ms=1000, cost_lambda=0.0, fold_in=True, history_limit=100,
                              threads=0, erased_poll_s=0, cache=cache)
    yield service, store, cache, holder
    store.close()


def lookups(result: str) -> float:
    return CACHE_LOOKUPS.labels(result)._value.get()


def ask(service: Recommendations, user: int = USER, k: int = 10):
    return asyncio.run(service.recommend(user, k))


def test_a_repeated_request_is_a_hit_with_the_same_answer(setup) -> None:
    service, _, cache, _ = setup
    hits, misses = lookups("hit"), lookups("miss")
    first = ask(service)
    second = ask(service)
    assert second.items == first.items and second.source == first.source == "model"
    assert (lookups("hit") - hits, lookups("miss") - misses) == (1, 1)
    assert (cache.hits, cache.misses) == (1, 1) and cache.hit_rate == 0.5
    assert ask(service, k=5).items == first.items[:5]  # another k: its own entry
    assert cache.misses == 2


def test_a_new_event_of_the_user_invalidates_their_entry_at_once(setup) -> None:
    service, store, cache, holder = setup
    first = ask(service)
    watched = first.items[0]
    store.apply([WatchMinute(datetime(2026, 12, 1, 12, m), USER, watched, m) for m in range(20)])
    stale = lookups("stale")
    after = ask(service)
    assert lookups("stale") - stale == 1 and cache.stale == 1
    assert after.source == "fold_in" and watched not in after.items  # recomputed, fresh
    assert ask(service).items == after.items and cache.hits == 1  # and cached again
    # another user's event does not touch this entry
    store.apply([WatchMinute(datetime(2026, 12, 1, 12, 0), 1080, watched, 1)])
    assert ask(service).items == after.items and cache.hits == 2


def test_erased_users_and_fallbacks_never_come_from_the_cache(setup) -> None:
    service, _, cache, holder = setup
    personal = ask(service)
    service.erased = frozenset({USER})
    erased = ask(service)
    assert erased.items == holder.current.popular_answer(10).items != personal.items
    service.erased = frozenset()
    unknown = ask(service, user=10**12)  # cold start without demographics: popularity
    assert unknown.source == "popularity"
    ask(service, user=10**12)
    assert cache.hits == 0


def test_a_new_model_version_misses(setup, tmp_path) -> None:
    service, _, cache, holder = setup
    ask(service)
    other = tiny_bundle(tmp_path / "other", seed=3)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["version"] = "tiny-2"
    (other / "manifest.json").write_text(json.dumps(manifest))
    holder.current = Engine.load(other)
    ask(service)
    assert (cache.hits, cache.misses) == (0, 2)


def test_lru_and_ttl_bound_the_memory_cache(monkeypatch) -> None:
    memory = MemoryCache(max_entries=2, ttl_s=10)
    cache = RecommendationCache(memory)
    for user in (1, 2, 3):
        cache.store("v", user, 10, None, [f"m{user}"], "model", False)
    assert len(memory) == 2 and cache.lookup("v", 1, 10, None) is None  # evicted
    assert cache.lookup("v", 3, 10, None).items == ("m3",)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 11)
    assert cache.lookup("v", 3, 10, None) is None  # expired


def test_bad_cache_settings_say_why() -> None:
    with pytest.raises(ValueError, match="off, memory or redis"):
        make_cache("disk", max_entries=1, ttl_s=1)
    with pytest.raises(ValueError, match="needs the Redis online store"):
        make_cache("redis", max_entries=1, ttl_s=1)
    assert make_cache("off", max_entries=1, ttl_s=1) is None
