"""Kafka transport and authentication options from the ``kafka`` config group, for both client
libraries the platform uses: kafka-python (``kafka_python_options``) and librdkafka through
confluent-kafka (``librdkafka_options``). The SASL password is read from the environment
(``MOVIEREC_KAFKA_PASSWORD``, which the chart fills from a Secret by ``secretKeyRef``), never
from the config, so it is in no argument, file or ConfigMap."""

from __future__ import annotations

import os
from typing import Any

PASSWORD_ENV = "MOVIEREC_KAFKA_PASSWORD"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurityError(ValueError):
    """The kafka security settings are incomplete or unknown."""


def _settings(kafka: Any) -> tuple[str, str, str, str, str]:
    protocol = str(getattr(kafka, "security_protocol", "PLAINTEXT") or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(f"kafka.security_protocol must be one of {', '.join(PROTOCOLS)}"
                                 f", not {protocol!r}")
    mechanism = str(getattr(kafka, "sasl_mechanism", "") or "").upper()
    user = str(getattr(kafka, "sasl_username", "") or "")
    cafile = str(getattr(kafka, "ssl_cafile", "") or "")
    password = ""
    if protocol.startswith("SASL_"):
        if mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"kafka.sasl_mechanism must be one of "
                                     f"{', '.join(MECHANISMS)} with {protocol}, not "
                                     f"{mechanism or 'empty'!r}")
        password = os.environ.get(PASSWORD_ENV, "")
        if not user or not password:
            raise KafkaSecurityError(f"{protocol} needs kafka.sasl_username and the password in "
                                     f"the environment variable {PASSWORD_ENV}")
    return protocol, mechanism, user, password, cafile


def kafka_python_options(kafka: Any) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaConsumer/KafkaProducer/KafkaAdminClient."""
    protocol, mechanism, user, password, cafile = _settings(kafka)
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        options.update(sasl_mechanism=mechanism, sasl_plain_username=user,
                       sasl_plain_password=password)
    if cafile and protocol.endswith("SSL"):
        options["ssl_cafile"] = cafile
    return options


def librdkafka_options(kafka: Any) -> dict[str, Any]:
    """The same for a librdkafka configuration dict (confluent-kafka)."""
    protocol, mechanism, user, password, cafile = _settings(kafka)
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security.protocol": protocol.lower()}
    if protocol.startswith("SASL_"):
        options.update({"sasl.mechanisms": mechanism, "sasl.username": user,
                        "sasl.password": password})
    if cafile and protocol.endswith("SSL"):
        options["ssl.ca.location"] = cafile
    return options
