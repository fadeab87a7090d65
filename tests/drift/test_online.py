"""The online drift service: KServe payload-logger CloudEvents in, drift metrics out."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from devstack.ports import free_port
from drift import metrics
from drift.online import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    OnlineDriftMonitor,
    create_app,
    request_user_ids,
    response_lists,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
N_USERS = 2000
MOVIES = [f"movie+{i}+1999" for i in range(400)]


def _users(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user_id": np.arange(N_USERS), "age": rng.integers(18, 70, N_USERS),
        "gender": rng.choice(["M", "F"], N_USERS),
        "occupation": rng.choice(["student", "engineer", "artist", "other"], N_USERS),
    })


def _payloads(rng, n: int, users: np.ndarray, niche: bool = False):
    """(request, response) bodies as the model server's V1 protocol produces them."""
    weights = 1.0 / np.arange(1, len(MOVIES) + 1) ** (0.2 if niche else 1.0)
    weights /= weights.sum()
    for _ in range(n):
        uid = int(rng.choice(users))
        items = [MOVIES[i] for i in rng.choice(len(MOVIES), 20, replace=False, p=weights)]
        yield ({"instances": [{"user_id": uid, "k": 20}]},
               {"predictions": [{"user_id": uid, "items": items}], "model_version": "3"})


def _feed(monitor: OnlineDriftMonitor, payloads) -> None:
    for request, response in payloads:
        monitor.observe(REQUEST_TYPE, request)
        monitor.observe(RESPONSE_TYPE, response)


def test_payload_parsing_v1_and_v2() -> None:
    assert request_user_ids({"instances": [{"user_id": 7}, {"user_id": "8"}, 9, {"x": 1}]}) == \
        [7, 8, 9]
    assert request_user_ids({"inputs": [{"name": "user_id", "data": [3, 4]}]}) == [3, 4]
    assert request_user_ids("garbage") == []
    assert response_lists({"predictions": [{"user_id": 1, "items": ["a", "b"]}, ["c"], {}]}) == \
        [["a", "b"], ["c"]]


def _run(seed: int, shift: str) -> bool:
    rng = np.random.default_rng(seed)
    users = _users()
    monitor = OnlineDriftMonitor(users, reference_size=400, window_size=300, check_every=10**9,
                                 seed=seed)
    everyone = users["user_id"].to_numpy()
    _feed(monitor, _payloads(rng, 400, everyone))
    if shift == "young":
        current_users = users.loc[users["age"] < 25, "user_id"].to_numpy()
    elif shift == "new_users":
        current_users = np.arange(N_USERS, N_USERS + 5000)
    else:
        current_users = everyone
    _feed(monitor, _payloads(rng, 300, current_users, niche=shift == "niche"))
    return monitor.check().is_drift


def test_stationary_payloads_raise_no_alarm_in_20_seeds() -> None:
    alarms = sum(_run(seed, "none") for seed in range(20))
    assert alarms <= 1


@pytest.mark.parametrize("shift", ["young", "new_users", "niche"])
def test_shifted_payloads_are_detected(shift: str) -> None:
    assert sum(_run(seed, shift) for seed in range(5)) == 5


def test_http_cloudevents_update_metrics() -> None:
    rng = np.random.default_rng(1)
    monitor = OnlineDriftMonitor(_users(), reference_size=100, window_size=100, check_every=50)
    client = TestClient(create_app(monitor))
    for i, (request, response) in enumerate(_payloads(rng, 200, np.arange(N_USERS))):
        headers = {"ce-id": f"id-{i}", "ce-specversion": "1.0",
                   "ce-source": "http://localhost:9081/", "content-type": "application/json"}
        r = client.post("/", json=request, headers={**headers, "ce-type": REQUEST_TYPE})
        assert r.status_code == 202
        r = client.post("/", json=response, headers={**headers, "ce-type": RESPONSE_TYPE})
        assert r.status_code == 202
    status = client.get("/status").json()
    assert status["reference"] == {"requests": 100, "responses": 100}
    assert status["current"] == {"requests": 100, "responses": 100}
    assert set(status["detectors"]) == {"online_requests", "online_responses"}
    body = client.get("/metrics").text
    assert 'movierec_drift_detected{detector="online_requests"}' in body
    assert 'movierec_drift_p_value{detector="online_responses",feature="score"}' in body
    assert client.post("/", content=b"{", headers={"ce-type": REQUEST_TYPE}).status_code == 400
    assert client.post("/", json={}).status_code == 400
    structured = {"specversion": "1.0", "id": "s1", "source": "x", "type": REQUEST_TYPE,
                  "data": {"instances": [{"user_id": 5}]}}
    r = client.post("/", json=structured,
                    headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 202
    assert metrics.ONLINE_PAYLOADS.labels(type="request", outcome="accepted")._value.get() >= 201


@pytest.mark.integration
def test_python_m_drift_online_serves_cloudevents(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "drift", "online", f"drift.online.port={port}",
         f"data.lake_root={tmp_path}", "drift.online.reference_size=50",
         "drift.online.window_size=50", "drift.online.check_every=20"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        rng = np.random.default_rng(0)
        with httpx.Client(base_url=url, timeout=10) as client:
            for i, (request, response) in enumerate(_payloads(rng, 120, np.arange(N_USERS))):
                for ce_type, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response)):
                    r = client.post("/", json=body, headers={
                        "ce-type": ce_type, "ce-id": str(i), "ce-specversion": "1.0",
                        "ce-source": "test"})
                    assert r.status_code == 202
            text = client.get("/metrics").text
        assert 'movierec_drift_detected{detector="online_responses"} 0.0' in text
        assert 'movierec_drift_online_payloads_total{outcome="accepted",type="response"} 120.0' \
            in text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
