"""Shared fixtures: real local services (Kafka broker), repo paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.kafka import KafkaBroker

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Apache Kafka broker (KRaft) on a free 127.0.0.1 port for the whole session."""
    broker = KafkaBroker(data_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def fresh_kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of the test's own, for tests that stop/restart/kill it."""
    broker = KafkaBroker(data_dir=tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED_DIR
