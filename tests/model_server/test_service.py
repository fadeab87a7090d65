"""The request path: deadlines, errors and outages answer the fallback list and count it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from model_server.cold_start import UserDemographics
from model_server.engine import Engine
from model_server.metrics import COLD_STARTS, FALLBACKS
from model_server.service import Recommendations
from model_server.swap import ModelHolder
from movierec_core.models.bundle import load_bundle
from movierec_core.models.testing import tiny_bundle
from tests.model_server.helpers import expected_known, expected_popularity


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("service") / "b")


@pytest.fixture(scope="module")
def holder(bundle_dir: Path) -> ModelHolder[Engine]:
    h: ModelHolder[Engine] = ModelHolder(load=Engine.load, resolve=lambda ref: bundle_dir)
    h.load_initial()
    return h


class SlowStore:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def interactions(self, user_id: int, limit: int = 500) -> list:
        time.sleep(self.delay_s)
        return []


class BrokenStore:
    def interactions(self, user_id: int, limit: int = 500) -> list:
        raise OSError("disk gone")


def counter(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


def service(holder, store=None, demographics=None, threads=0, deadline_ms=50.0):
    return Recommendations(holder, store_factory=(lambda: store) if store else None,
                           demographics=demographics, deadline_ms=deadline_ms, cost_lambda=0.0,
                           fold_in=True, history_limit=100, threads=threads)


@pytest.mark.parametrize("threads", [0, 2])
def test_a_slow_store_answers_the_fallback_and_counts_a_deadline(holder, bundle_dir,
                                                                 threads: int) -> None:
    before = counter(FALLBACKS, reason="deadline")
    answer = asyncio.run(service(holder, SlowStore(0.2), threads=threads).recommend(1000, 20))
    assert (answer.source, answer.items) == ("fallback", expected_popularity(bundle_dir))
    assert counter(FALLBACKS, reason="deadline") == before + 1


def test_a_broken_store_degrades_to_training_history_only(holder, bundle_dir) -> None:
    answer = asyncio.run(service(holder, BrokenStore()).recommend(1000, 20))
    assert (answer.source, answer.items) == ("model", expected_known(bundle_dir, 1000))


def test_an_engine_error_answers_the_fallback_and_counts_it(holder, bundle_dir,
                                                           monkeypatch) -> None:
    engine = holder.current
    monkeypatch.setattr(engine, "rank", lambda *a, **kw: 1 / 0)
    before = counter(FALLBACKS, reason="error")
    answer = asyncio.run(service(holder).recommend(1000, 20))
    assert (answer.source, answer.items) == ("fallback", expected_popularity(bundle_dir))
    assert counter(FALLBACKS, reason="error") == before + 1


def metadata(handler) -> UserDemographics:
    return UserDemographics("http://metadata", timeout_s=0.5, backoff_s=60,
                            transport=httpx.MockTransport(handler))


def test_cold_start_uses_the_segment_when_metadata_answers(holder, bundle_dir) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"user_id": 5, "age": 22, "gender": "F",
                                         "occupation": "writer"})

    svc = service(holder, demographics=metadata(handler), deadline_ms=1000)
    before = counter(COLD_STARTS, source="segment")

    async def twice():
        return await svc.recommend(5, 20), await svc.recommend(5, 20)

    first, second = asyncio.run(twice())
    b = load_bundle(bundle_dir)
    assert first.items == second.items == b.movie_ids(b.cold_start_items(22, "F", "writer", k=20))
    assert calls == ["/user/5"]  # cached
    assert counter(COLD_STARTS, source="segment") == before + 2


def test_metadata_outage_means_popularity_and_backoff(holder, bundle_dir) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused")

    svc = service(holder, demographics=metadata(handler), deadline_ms=1000)

    async def twice():
        return await svc.recommend(6, 20), await svc.recommend(7, 20)

    a, b = asyncio.run(twice())
    assert a.items == b.items == expected_popularity(bundle_dir)
    assert a.source == "popularity"
    assert len(calls) == 1  # backing off after the failure


def test_slow_metadata_is_cut_at_its_budget(holder, bundle_dir) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1.0)
        return httpx.Response(200, json={"age": 22, "gender": "F", "occupation": "writer"})

    demographics = UserDemographics("http://metadata", timeout_s=0.05,
                                    transport=httpx.MockTransport(handler))
    svc = service(holder, demographics=demographics, deadline_ms=1000)
    started = time.monotonic()
    answer = asyncio.run(svc.recommend(8, 20))
    assert answer.source == "popularity"
    assert time.monotonic() - started < 0.9  # not waiting for the slow API
