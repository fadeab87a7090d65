"""Hydra composition: groups, typed schemas, command-line overrides."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from movierec_core.config import KafkaConfig, compose, split_overrides, write_resolved


def test_contract_groups_compose_with_overrides() -> None:
    cfg = compose("contract", ["kafka.bootstrap=10.0.0.1:19092", "model.factors=32", "data=cluster"])
    assert cfg.kafka.bootstrap == "10.0.0.1:19092"
    assert cfg.kafka.topic == "movielog"
    assert cfg.model.factors == 32
    assert cfg.data.online_store_backend == "redis"
    assert cfg.serving.k == 20


def test_typed_schema_rejects_unknown_keys_and_bad_types() -> None:
    with pytest.raises(ConfigCompositionException):
        compose("contract", ["kafka.no_such_key=1"])
    with pytest.raises(ConfigCompositionException):
        compose("contract", ["model.factors=lots"])


def test_split_overrides() -> None:
    assert split_overrides(["snapshot", "--k", "10", "kafka.topic=x", "+extra=1"]) == (
        ["snapshot", "--k", "10"], ["kafka.topic=x", "+extra=1"])


def test_dead_letter_topic_defaults_to_topic_dot_dlq() -> None:
    assert KafkaConfig(topic="movielog7").dead_letter_topic == "movielog7.dlq"
    assert KafkaConfig(topic="t", dlq_topic="bad").dead_letter_topic == "bad"


def test_resolved_config_is_written(tmp_path) -> None:
    cfg = compose("contract", ["kafka.topic=abc"])
    path = write_resolved(cfg, tmp_path)
    assert "topic: abc" in path.read_text()
