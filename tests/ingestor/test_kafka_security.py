"""Kafka with authentication (issue 21): the options both client libraries get from the
``kafka`` config group, and the ingestor (kafka-python and librdkafka consumers) reading a real
broker that requires SASL/PLAIN, its password only in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from devstack.kafka import KafkaBroker
from movierec_core.kafka_security import (
    PASSWORD_ENV,
    KafkaSecurityError,
    kafka_python_options,
    librdkafka_options,
)
from tests.ingestor.helpers import REPO_ROOT, lake_counts, simulator_stream

USER, PASSWORD = "ingest", "pw-4f7a1c"


def kafka(**kw) -> SimpleNamespace:
    return SimpleNamespace(**{"security_protocol": "PLAINTEXT", "sasl_mechanism": "",
                              "sasl_username": "", "ssl_cafile": "", **kw})


def test_options_for_each_protocol(monkeypatch) -> None:
    assert kafka_python_options(kafka()) == {} and librdkafka_options(kafka()) == {}
    ssl = kafka(security_protocol="SSL", ssl_cafile="/etc/ca.pem")
    assert kafka_python_options(ssl) == {"security_protocol": "SSL", "ssl_cafile": "/etc/ca.pem"}
    assert librdkafka_options(ssl) == {"security.protocol": "ssl",
                                       "ssl.ca.location": "/etc/ca.pem"}
    monkeypatch.setenv(PASSWORD_ENV, "s3")
    sasl = kafka(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                 sasl_username="u", ssl_cafile="/ca")
    assert kafka_python_options(sasl) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u", "sasl_plain_password": "s3", "ssl_cafile": "/ca"}
    assert librdkafka_options(sasl) == {
        "security.protocol": "sasl_ssl", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "u", "sasl.password": "s3", "ssl.ca.location": "/ca"}


@pytest.mark.parametrize(("settings", "message"), [
    ({"security_protocol": "TLS"}, "must be one of PLAINTEXT, SSL"),
    ({"security_protocol": "SASL_SSL", "sasl_username": "u"}, "sasl_mechanism must be one of"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
     f"needs kafka.sasl_username and the password in the environment variable {PASSWORD_ENV}"),
])
def test_incomplete_settings_are_refused_with_the_reason(monkeypatch, settings, message) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(KafkaSecurityError, match=message):
        kafka_python_options(kafka(**settings))


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory):
    broker = KafkaBroker(data_dir=tmp_path_factory.mktemp("sasl-kafka"),
                         sasl_users={USER: PASSWORD})
    broker.start()
    yield broker
    broker.stop()


def client_options() -> dict:
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
            "sasl_plain_username": USER, "sasl_plain_password": PASSWORD}


@pytest.mark.integration
@pytest.mark.parametrize("consumer", ["kafka-python", "confluent"])
def test_the_ingestor_reads_a_broker_that_requires_sasl(sasl_broker, tmp_path: Path,
                                                       consumer: str) -> None:
    topic = f"sasl-{consumer}"
    admin = KafkaAdminClient(bootstrap_servers=sasl_broker.bootstrap, **client_options())
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    lines, ledger = simulator_stream(2000, invalid_rate=0.0, duplicate_rate=0.0)
    producer = KafkaProducer(bootstrap_servers=sasl_broker.bootstrap, **client_options())
    for line in lines:
        producer.send(topic, line)
    producer.flush()
    producer.close()
    # without credentials the broker gives nothing away
    try:
        anonymous = KafkaConsumer(bootstrap_servers=sasl_broker.bootstrap,
                                  request_timeout_ms=3000, bootstrap_timeout_ms=3000)
        try:
            parts = anonymous.partitions_for_topic(topic)
        finally:
            anonymous.close()
    except Exception:  # noqa: BLE001 - kafka-python refuses in several ways
        parts = None
    assert not parts
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), PASSWORD_ENV: PASSWORD}
    out = subprocess.run([
        sys.executable, "-m", "ingestor", f"kafka.bootstrap={sasl_broker.bootstrap}",
        f"kafka.topic={topic}", f"kafka.group_id=g-{topic}",
        "kafka.security_protocol=SASL_PLAINTEXT", "kafka.sasl_mechanism=PLAIN",
        f"kafka.sasl_username={USER}", f"data.lake_root={tmp_path / 'lake'}",
        f"data.online_store_path={tmp_path / 'online.sqlite'}", "ingestor.metrics_port=0",
        "ingestor.enrichment=false", f"ingestor.consumer={consumer}",
        "ingestor.exit_when_idle_s=2"], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert PASSWORD not in out.stdout + out.stderr  # never logged
    assert sum(lake_counts(tmp_path / "lake").values()) == sum(ledger.valid.values())
