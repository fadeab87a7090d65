"""Router weights from a ConfigMap: parsing, the effective instant, and refusal of bad updates."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest

from experiments.router import ExperimentState, Router, Variant, follow_configmap
from experiments.weights_source import ConfigMapWeights, parse_payload, render_payload

NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


class FakeAPI:
    def __init__(self) -> None:
        self.version = 0
        self.data: dict[str, str] = {}
        self.fail = False

    def set(self, payload: str) -> None:
        self.version += 1
        self.data = {"weights.json": payload}

    def get_configmap(self, name: str) -> dict:
        if self.fail:
            raise httpx.ConnectError("apiserver down")
        return {"metadata": {"name": name, "resourceVersion": str(self.version)}, "data": self.data}


def test_render_then_parse_round_trips_with_the_effective_instant() -> None:
    text = render_payload({"champion": 75, "challenger": 25}, "canary", delay_s=5, now=NOW)
    update = parse_payload(text, "7")
    assert update.weights == {"champion": 75.0, "challenger": 25.0}
    assert update.source == "canary" and update.version == "7"
    assert update.effective_at == NOW + timedelta(seconds=5)
    assert update.delay_s(NOW) == 5.0 and update.delay_s(NOW + timedelta(seconds=9)) == 0.0


@pytest.mark.parametrize(("payload", "reason"), [
    ("not json", "not JSON"),
    ('{"weights": [1, 2]}', "needs an object"),
    ('{"weights": {"a": 120}}', "in [0, 100]"),
    ('{"weights": {"a": true}}', "in [0, 100]"),
    ('{"weights": {"a": 0, "b": 0}}', "sum to zero"),
    ('{"weights": {"a": 100}, "effective_at": "soon"}', "not an ISO time"),
])
def test_bad_payloads_are_refused_with_a_reason(payload: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_payload(payload)


def test_poll_applies_each_new_version_once_at_its_instant() -> None:
    api, applied, slept = FakeAPI(), [], []
    watcher = ConfigMapWeights("w", applied.append, api, clock=lambda: NOW, sleep=slept.append)
    api.set(render_payload({"champion": 95, "challenger": 5}, "canary", delay_s=3, now=NOW))
    assert watcher.poll_once() is not None
    assert watcher.poll_once() is None  # same resourceVersion
    assert [u.weights for u in applied] == [{"champion": 95.0, "challenger": 5.0}]
    assert slept == [3.0]


def test_an_unreadable_or_invalid_configmap_keeps_the_current_weights() -> None:
    api, applied = FakeAPI(), []
    watcher = ConfigMapWeights("w", applied.append, api, clock=lambda: NOW, sleep=lambda s: None)
    api.fail = True
    assert watcher.poll_once() is None
    api.fail = False
    api.set('{"weights": {"champion": -1}}')
    assert watcher.poll_once() is None
    assert applied == [] and watcher.errors == 2


def _router() -> Router:
    state = ExperimentState("exp", [Variant("champion", 100.0, ["http://a"]),
                                    Variant("challenger", 0.0, ["http://b"])])
    return Router(state)


def test_the_router_follows_the_configmap_and_refuses_variants_it_was_not_given() -> None:
    api = FakeAPI()
    api.set(json.dumps({"weights": {"champion": 50, "challenger": 50}, "source": "kubectl"}))
    router = _router()
    cfg = SimpleNamespace(weights_configmap="movierec-router-weights", weights_poll_s=3600)
    watcher = follow_configmap(router, cfg, api=api)
    try:
        snap = {v["name"]: v["weight"] for v in router.state.snapshot()["variants"]}
        assert snap == {"champion": 50.0, "challenger": 50.0}
        # a variant with no configured upstream cannot be given traffic through the ConfigMap
        api.set(json.dumps({"weights": {"champion": 50, "attacker": 50}}))
        assert watcher.poll_once() is None and watcher.errors == 1
        snap = {v["name"]: v["weight"] for v in router.state.snapshot()["variants"]}
        assert snap == {"champion": 50.0, "challenger": 50.0}
    finally:
        watcher.stop()
