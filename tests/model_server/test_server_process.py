"""HTTP tests against the real ``python -m model_server`` process (one per module)."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from movierec_core.events import WatchMinute
from movierec_core.models.bundle import load_bundle
from movierec_core.models.testing import tiny_bundle
from movierec_core.online_store import SqliteOnlineStore
from movierec_core.registry import FileRegistry
from tests.model_server.helpers import (
    StubMetadataApi,
    expected_fold_in,
    expected_known,
    expected_popularity,
    model_server_process,
)

pytestmark = pytest.mark.integration

KNOWN = 1000  # row 0 of the tiny bundle
WATCHER = 1010  # row 1: watches a movie through the online store
NEW_WITH_METADATA = 777_001
NEW_WITHOUT_METADATA = 777_002
NEW_WATCHER = 777_003  # unknown to the model, but has online events


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("model_server")
    v1 = tiny_bundle(root / "b1", seed=0)
    v2 = tiny_bundle(root / "b2", seed=1)
    registry = FileRegistry(root / "registry")
    assert registry.register("movierec", v1, aliases=("champion",)) == "v0001"
    assert registry.register("movierec", v2) == "v0002"
    store_path = root / "online.sqlite"
    watched = expected_known(v1, WATCHER)[0]  # the movie it would recommend first
    new_watched = load_bundle(v1).movie_ids([2])[0]
    store = SqliteOnlineStore(store_path)
    t = datetime(2025, 3, 2, 14, 7, 33)
    store.apply([WatchMinute(t, WATCHER, watched, m) for m in range(90)]
                + [WatchMinute(t, NEW_WATCHER, new_watched, m) for m in range(90)])
    store.close()
    return {"root": root, "v1": registry.resolve("movierec", "v0001"),
            "v2": registry.resolve("movierec", "v0002"), "registry": registry,
            "store": store_path, "watched": watched, "new_watched": new_watched}


@pytest.fixture(scope="module")
def server(world: dict) -> str:
    users = {NEW_WITH_METADATA: {"user_id": NEW_WITH_METADATA, "age": 22, "gender": "F",
                                 "occupation": "writer"}}
    with StubMetadataApi(users) as api, model_server_process([
        f"data.registry_root={world['root'] / 'registry'}",
        f"data.online_store_path={world['store']}",
        f"serving.provenance_log={world['root'] / 'provenance.jsonl'}",
        f"metadata_api.url={api.url}",
        "serving.poll_alias_s=0.2",
        "serving.deadline_ms=2000",  # correctness here; deadlines are unit-tested
        "model_server.metadata_timeout_ms=1000",
    ], world["root"]) as base:
        yield base


def get(base: str, path: str) -> httpx.Response:
    return httpx.get(base + path, timeout=10)


def test_known_user_gets_the_models_top_20_without_seen_movies(server: str, world: dict) -> None:
    response = get(server, f"/recommend/{KNOWN}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == ",".join(expected_known(world["v1"], KNOWN))
    assert response.headers["x-model-version"] == "v0001"
    assert response.headers["x-recommendation-source"] == "model"
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", response.headers["x-request-id"])


def test_movie_watched_in_the_online_store_is_excluded_and_folded_in(server: str,
                                                                     world: dict) -> None:
    """90 of ~100 default-runtime minutes watched → confidence 0.9 folded into the user's row."""
    response = get(server, f"/recommend/{WATCHER}")
    assert response.headers["x-recommendation-source"] == "fold_in"
    items = response.text.split(",")
    assert world["watched"] not in items
    assert items == expected_fold_in(world["v1"], WATCHER, {world["watched"]: 0.9})
    assert items != expected_known(world["v1"], WATCHER, extra_seen=(world["watched"],))


def test_new_user_with_metadata_gets_their_segments_list(server: str, world: dict) -> None:
    bundle = load_bundle(world["v1"])
    expected = bundle.movie_ids(bundle.cold_start_items(22, "F", "writer", k=20))
    assert get(server, f"/recommend/{NEW_WITH_METADATA}").text == ",".join(expected)


def test_new_user_without_metadata_gets_global_popularity(server: str, world: dict) -> None:
    response = get(server, f"/recommend/{NEW_WITHOUT_METADATA}")
    assert response.text == ",".join(expected_popularity(world["v1"]))
    assert response.headers["x-recommendation-source"] == "popularity"


def test_new_user_with_online_events_is_folded_in(server: str, world: dict) -> None:
    items = get(server, f"/recommend/{NEW_WATCHER}").text.split(",")
    assert world["new_watched"] not in items
    assert items == expected_fold_in(world["v1"], NEW_WATCHER, {world["new_watched"]: 0.9})


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "1e3", "%20", "0x10", "12a", "+5", "%EF%BC%95"])
def test_non_integer_user_id_is_400_with_a_plain_reason(server: str, bad: str) -> None:
    response = get(server, f"/recommend/{bad}")
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "must be a non-negative integer" in response.text


def test_odd_but_valid_ids_never_fail(server: str, world: dict) -> None:
    for user in ["0", "007", "9223372036854775807", "99999999999999999999999", str(2**64)]:
        response = get(server, f"/recommend/{user}")
        assert response.status_code == 200, user
        assert len(response.text.split(",")) == 20


def test_v1_predict(server: str, world: dict) -> None:
    response = httpx.post(f"{server}/v1/models/movierec:predict", timeout=10, json={
        "instances": [{"user_id": KNOWN, "k": 5}, {"user_id": NEW_WITHOUT_METADATA}]})
    assert response.status_code == 200
    assert response.json() == {"predictions": [
        {"user_id": KNOWN, "items": expected_known(world["v1"], KNOWN, k=5)},
        {"user_id": NEW_WITHOUT_METADATA, "items": expected_popularity(world["v1"])}],
        "model_version": "v0001"}
    assert response.headers["x-model-version"] == "v0001"


def test_v1_predict_as_a_cloudevent_goes_through_kserve(server: str, world: dict) -> None:
    """Our V1 route is a lean one; a binary-mode CloudEvent is handed to KServe's own route,
    which answers with a CloudEvent (ce-* headers) around the same predictions."""
    response = httpx.post(f"{server}/v1/models/movierec:predict", timeout=10, headers={
        "ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "tests",
        "ce-type": "recommend.request", "content-type": "application/json"},
        content=b'{"instances": [{"user_id": %d, "k": 5}]}' % KNOWN)
    assert response.status_code == 200, response.text
    assert response.headers["ce-specversion"] == "1.0"
    assert response.json()["predictions"] == [
        {"user_id": KNOWN, "items": expected_known(world["v1"], KNOWN, k=5)}]


def test_v2_infer(server: str, world: dict) -> None:
    response = httpx.post(f"{server}/v2/models/movierec/infer", timeout=10, json={
        "inputs": [{"name": "user_id", "datatype": "INT64", "shape": [2],
                    "data": [KNOWN, NEW_WITHOUT_METADATA]},
                   {"name": "k", "datatype": "INT64", "shape": [1], "data": [3]}]})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "v0001"
    assert body["outputs"] == [{"name": "items", "shape": [2], "datatype": "BYTES",
                                "parameters": None, "data": [
                                    ",".join(expected_known(world["v1"], KNOWN, k=3)),
                                    ",".join(expected_popularity(world["v1"], k=3))]}]


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "request body is not JSON|Unrecognized request format"),  # ours | KServe's
    (b'{"instances": 5}', '"instances" must be a non-empty list'),
    (b'{"instances": []}', '"instances" must be a non-empty list'),
    (b'{"user_id": 1}', 'expected a JSON object {"instances"'),
    (b'{"instances": [{"k": 3}]}', 'instance 0: missing "user_id"'),
    (b'{"instances": [{"user_id": "x"}]}', "instance 0: user id must be a non-negative integer"),
    (b'{"instances": [{"user_id": -4}]}', "instance 0: user id must be a non-negative integer"),
    (b'{"instances": [{"user_id": 1, "k": 0}]}', "instance 0: k must be an integer in 1..100"),
    (b'{"instances": [{"user_id": 1, "k": "5"}]}', "instance 0: k must be an integer in 1..100"),
])
def test_malformed_v1_is_400_with_a_message(server: str, body: bytes, message: str) -> None:
    for content_type in ("application/json", "text/plain"):
        response = httpx.post(f"{server}/v1/models/movierec:predict", content=body, timeout=10,
                              headers={"content-type": content_type})
        assert response.status_code == 400, (content_type, response.text)
        error = response.json()["error"]
        assert any(m in error for m in message.split("|")), error


@pytest.mark.parametrize(("body", "message"), [
    ({"inputs": 3}, "invalid request body"),
    ({"inputs": [{"name": "k", "datatype": "INT64", "shape": [1], "data": [3]}]},
     'missing input "user_id"'),
    ({"inputs": [{"name": "user_id", "datatype": "FP32", "shape": [1], "data": [1.5]}]},
     "datatype must be an integer type"),
    ({"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [-1]}]},
     "user ids must be non-negative"),
    ({"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [3], "data": [1]}]},
     'input "user_id"'),
    ({"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [1]},
                 {"name": "k", "datatype": "INT64", "shape": [1], "data": [1000]}]},
     'input "k": k must be an integer in 1..100'),
    ({"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [1]},
                 {"name": "bogus", "datatype": "INT64", "shape": [1], "data": [1]}]},
     "unknown inputs ['bogus']"),
])
def test_malformed_v2_is_400_with_a_message(server: str, body: dict, message: str) -> None:
    response = httpx.post(f"{server}/v2/models/movierec/infer", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_v2_body_that_is_not_json_is_400(server: str) -> None:
    response = httpx.post(f"{server}/v2/models/movierec/infer", content=b"{nope", timeout=10,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]


def test_request_id_is_echoed_and_provenance_is_logged(server: str, world: dict) -> None:
    response = httpx.get(f"{server}/recommend/{KNOWN}", headers={"x-request-id": "trace-me-1"},
                         timeout=10)
    assert response.headers["x-request-id"] == "trace-me-1"
    path = world["root"] / "provenance.jsonl"
    record = None
    for _ in range(50):  # the writer is asynchronous
        records = [json.loads(line) for line in path.read_text().splitlines() if line]
        record = next((r for r in records if r["request_id"] == "trace-me-1"), None)
        if record:
            break
        time.sleep(0.1)
    assert record is not None
    assert {k: record[k] for k in ("user_id", "items", "endpoint", "source", "model_version",
                                   "code_version", "snapshot_id")} == {
        "user_id": KNOWN, "items": response.text.split(","), "endpoint": "recommend",
        "source": "model", "model_version": "v0001", "code_version": "test",
        "snapshot_id": "tiny"}


def test_metrics_are_on_the_model_servers_own_metrics_endpoint(server: str) -> None:
    get(server, f"/recommend/{KNOWN}")
    text = get(server, "/metrics").text
    for name in ("movierec_model_server_requests_total{",
                 "movierec_model_server_request_duration_seconds_bucket{",
                 "movierec_model_server_cold_starts_total{",
                 'movierec_model_server_model_info{model_type="als",version="v0001"} 1.0',
                 "movierec_model_server_model_swaps_total",
                 "movierec_model_server_fallbacks_total"):
        assert name in text, name


def test_swapping_twice_under_load_fails_no_request(server: str, world: dict) -> None:
    """Requests run continuously while the alias moves to v0002 (picked up by polling) and an
    admin call brings v0001 back: zero failures, both versions observed."""
    registry: FileRegistry = world["registry"]
    versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.get(f"{server}/recommend/{KNOWN}")
                    if r.status_code != 200 or len(r.text.split(",")) != 20:
                        failures.append(f"{r.status_code} {r.text[:80]}")
                    versions.append(r.headers.get("x-model-version", ""))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        registry.set_alias("movierec", "champion", "v0002")  # swap 1: alias polling
        for _ in range(200):
            if versions and versions[-1] == "v0002":
                break
            time.sleep(0.05)
        time.sleep(0.3)
        reload = httpx.post(f"{server}/admin/reload", json={"version": "v0001"}, timeout=30)
        assert reload.status_code == 200, reload.text
        assert reload.json() == {"version": "v0001", "previous": "v0002", "swapped": True}
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        registry.set_alias("movierec", "champion", "v0001")
    assert failures == []
    assert {"v0001", "v0002"} <= set(versions)
    assert versions[-1] == "v0001"
    assert 'movierec_model_server_model_info{model_type="als",version="v0002"} 0.0' in get(
        server, "/metrics").text


def test_admin_reload_of_an_unknown_version_is_404_and_keeps_serving(server: str) -> None:
    response = httpx.post(f"{server}/admin/reload", json={"version": "v0999"}, timeout=10)
    assert response.status_code == 404
    assert "v0999" in response.json()["error"]
    assert get(server, f"/recommend/{KNOWN}").status_code == 200


def test_metadata_file_records_the_resolved_config(world: dict, server: str) -> None:
    assert any(Path(world["root"]).glob("model_server-*.config.yaml"))


def test_recommend_never_answers_500_whatever_the_id(server: str) -> None:
    import random
    from urllib.parse import quote

    rng = random.Random(7)
    alphabet = "0123456789-+.eE x/%?#\u00e9\u0663\uff15\x00\x7f"
    ids = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(300)]
    ids += ["9" * 5000, "1" * 19, "0" * 40 + "1"]
    statuses = set()
    with httpx.Client(timeout=10) as client:
        for user in ids:
            response = client.get(f"{server}/recommend/{quote(user, safe='')}")
            statuses.add(response.status_code)
            assert response.status_code in (200, 307, 400, 404), (user, response.status_code)
            if response.status_code == 200:
                assert len(response.text.split(",")) == 20
    assert {200, 400} <= statuses


def test_a_fresh_install_serves_503_until_the_first_model_is_registered(tmp_path: Path) -> None:
    """Before the first training the registry is empty: the server starts (no crash loop on a
    cluster), is not ready and answers 503, and serves the first version once it appears."""
    from devstack.ports import free_port
    from devstack.supervisor import Supervisor

    port, base = free_port(), None
    base = f"http://127.0.0.1:{port}"
    registry = FileRegistry(tmp_path / "registry")
    with Supervisor(tmp_path) as supervisor:
        supervisor.start("model_server", [
            "python", "-m", "model_server", f"serving.http_port={port}",
            f"data.registry_root={tmp_path / 'registry'}",
            f"data.online_store_path={tmp_path / 'online.sqlite'}",
            f"serving.provenance_log={tmp_path / 'provenance.jsonl'}",
            "metadata_api.url=http://127.0.0.1:9", "serving.poll_alias_s=0.2"],
            env={"OPENBLAS_NUM_THREADS": "1"})
        supervisor.wait_http("model_server", f"{base}/v2/health/live", 90)
        assert get(base, "/v2/models/movierec/ready").status_code == 503
        waiting = get(base, "/recommend/1000")
        assert (waiting.status_code, waiting.text) == (
            503, "no model version is loaded yet: the registry has none to serve")
        v1 = httpx.post(f"{base}/v1/models/movierec:predict",
                        json={"instances": [{"user_id": 1000}]}, timeout=10)
        assert v1.status_code == 503 and "not ready" in v1.text
        assert registry.register("movierec", tiny_bundle(tmp_path / "b1", seed=0),
                                 aliases=("champion",)) == "v0001"
        supervisor.wait_http("model_server", f"{base}/v2/models/movierec/ready", 30)
        served = get(base, "/recommend/1000")
        assert served.status_code == 200 and served.headers["x-model-version"] == "v0001"
        assert served.text == ",".join(expected_known(registry.resolve("movierec", "v0001"), 1000))
