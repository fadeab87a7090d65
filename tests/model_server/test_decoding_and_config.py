"""V1/V2 payload decoding (errors name the problem) and the composed Hydra config."""

from __future__ import annotations

import pytest
from kserve import InferInput, InferRequest
from kserve.errors import InvalidInput

from model_server.model import MovierecModel, parse_user_id
from model_server.server import load_config


@pytest.fixture
def model() -> MovierecModel:
    return MovierecModel("movierec", holder=None, service=None, provenance=None)


def test_v1_instances_as_objects_or_bare_ids(model: MovierecModel) -> None:
    assert model._decode_v1({"instances": [{"user_id": 1, "k": 5}, 2, "3"]}) == ([1, 2, 3],
                                                                               [5, 20, 20])
    assert model._decode_v1(b'{"instances": [{"user_id": 7}]}') == ([7], [20])


@pytest.mark.parametrize(("payload", "message"), [
    (b"\xff", "not JSON"),
    ({"instances": [True]}, "not a boolean"),
    ({"instances": [{"user_id": 1.5}]}, "non-negative integer"),
    ({"instances": [{"user_id": 1, "k": 101}]}, "k must be an integer in 1..100"),
    ({"instances": [1] * 1001}, "at most 1000 instances"),
    ([1, 2], '{"instances"'),
])
def test_v1_errors(model: MovierecModel, payload, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        model._decode_v1(payload)


def v2(*inputs: InferInput) -> InferRequest:
    return InferRequest(model_name="movierec", infer_inputs=list(inputs))


def test_v2_user_ids_and_broadcast_k(model: MovierecModel) -> None:
    users = InferInput("user_id", [3], "INT64", [1, 2, 3])
    assert model._decode_v2(v2(users)) == ([1, 2, 3], [20, 20, 20])
    k = InferInput("k", [1], "INT32", [4])
    assert model._decode_v2(v2(users, k)) == ([1, 2, 3], [4, 4, 4])
    per_user = InferInput("k", [3], "INT64", [1, 2, 3])
    assert model._decode_v2(v2(users, per_user)) == ([1, 2, 3], [1, 2, 3])
    with pytest.raises(InvalidInput, match='"k" has 2 values for 3 users'):
        model._decode_v2(v2(users, InferInput("k", [2], "INT64", [1, 2])))
    with pytest.raises(InvalidInput, match="shape must be"):
        model._decode_v2(v2(InferInput("user_id", [1, 2], "INT64", [[1, 2]])))


def test_parse_user_id() -> None:
    assert parse_user_id("007") == 7
    assert parse_user_id(2**63 - 1) == 2**63 - 1
    for bad in ("", "-1", "1.0", "٣", " 1", None, 1.0, -3):
        with pytest.raises(ValueError):
            parse_user_id(bad)
    with pytest.raises(OverflowError):
        parse_user_id("9" * 25)


def test_config_composes_with_defaults_and_overrides() -> None:
    cfg = load_config(["serving.http_port=8091", "model_server.rank_threads=2"])
    assert cfg.serving.model_name == "movierec"
    assert cfg.serving.http_port == 8091
    assert cfg.serving.k == 20
    assert cfg.model_server.workers == 1
    assert cfg.model_server.grpc_port == 0
    assert cfg.model_server.rank_threads == 2
    assert cfg.metadata_api.url == "http://127.0.0.1:8080"


def test_event_loop_setting_installs_the_loop_kserve_documents():
    """KServe's ``auto`` means uvloop, but ModelServer.start() would run the stdlib loop."""
    import subprocess
    import sys

    from model_server.server import install_event_loop

    assert install_event_loop("asyncio") == "asyncio"
    with pytest.raises(ValueError, match="auto, uvloop or asyncio"):
        install_event_loop("tokio")
    probe = ("import asyncio; from model_server.server import install_event_loop as i; "
             "print(i('auto')); "
             "print(type(asyncio.new_event_loop()).__module__, "
             "asyncio.run(asyncio.sleep(0, 'ran')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["uvloop", "uvloop", "ran"]
