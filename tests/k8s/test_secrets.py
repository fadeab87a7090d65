"""Credentials in the rendered chart (issue 21): the admin token reaches the router and the
model server only by ``secretKeyRef``; no container argument, command, plain env value or
ConfigMap of any values mode carries anything that looks like a credential."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.conftest import CHART, RENDER_CASES, RENDER_IDS, containers_of, objects, render

CHART_CI = CHART / "ci"

# key=value / key: value where the key names a credential and the value is given inline (not a
# path, a reference, a template, an empty or boolean value, or code reading it from elsewhere:
# "token = (SA_DIR / 'token').read_text()" in a script ConfigMap)
CREDENTIAL = re.compile(
    r"(?i)(password|passwd|secret|token|api[_-]?key|credential|sasl\.jaas)[\w.-]*"
    r"[\"']?\s*[=:]\s*(?!\s*$)(?![\"']?(/|\$\(|\{\{|<|none\b|null\b|false\b|true\b|\"\"|''))"
    r"(?!\(|[A-Za-z_][\w.]*[(\[])\S+")


def rendered(values_file: Path | None) -> list[dict[str, Any]]:
    return objects(render(values_file))


def credential_like(text: str) -> list[str]:
    return [m.group(0) for m in CREDENTIAL.finditer(text)]


def test_the_pattern_finds_inline_credentials_and_spares_references() -> None:
    assert credential_like("kafka.sasl_password=hunter2")
    assert credential_like("redis token: abc123")
    assert credential_like('"api_key": "k-42"')
    assert not credential_like("admin_token_file=/var/run/secrets/movierec/token")
    assert not credential_like("token_file: /etc/secret/x")
    assert not credential_like('password: ""')
    assert not credential_like('token = (SA_DIR / "token").read_text()')
    assert not credential_like('token = os.environ["MOVIEREC_ADMIN_TOKEN"]')


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_the_admin_token_comes_from_a_secret_by_reference(values_file: Path | None) -> None:
    objs = rendered(values_file)
    found = []
    for o in objs:
        for where, c in containers_of(o):
            for env in c.get("env", []):
                if env["name"] == "MOVIEREC_ADMIN_TOKEN":
                    assert "value" not in env, f"{o['kind']}/{o['metadata']['name']}/{where}"
                    ref = env["valueFrom"]["secretKeyRef"]
                    found.append((o["kind"], ref["name"], ref["key"]))
    kinds = {k for k, _, _ in found}
    assert "ServingRuntime" in kinds and ("Deployment" in kinds), found
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    for _, name, key in found:
        assert name in secrets and key in secrets[name]["data"], (name, key)
        assert len(secrets[name]["data"][key]) >= 40  # base64 of a 40-character random token


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_no_credential_in_args_env_values_or_configmaps(values_file: Path | None) -> None:
    problems = []
    for o in rendered(values_file):
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "ConfigMap":
            for key, value in (o.get("data") or {}).items():
                problems += [f"{name} data.{key}: {hit}" for hit in credential_like(str(value))]
        for where, c in containers_of(o):
            for part in ("args", "command"):
                for arg in c.get(part) or []:
                    problems += [f"{name}/{where} {part}: {hit}"
                                 for hit in credential_like(str(arg))]
            for env in c.get("env") or []:
                if "value" in env and CREDENTIAL.search(f"{env['name']}={env['value']}"):
                    problems.append(f"{name}/{where} env {env['name']} has an inline value")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_the_inference_service_is_cluster_local(values_file: Path | None) -> None:
    isvcs = [o for o in rendered(values_file) if o["kind"] == "InferenceService"]
    for isvc in isvcs:
        assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"


def test_kafka_sasl_and_redis_passwords_come_from_secrets_by_reference() -> None:
    objs = objects(render(None, "platform.kafka.securityProtocol=SASL_SSL",
                          "platform.kafka.saslMechanism=SCRAM-SHA-512",
                          "platform.kafka.saslUsername=ingest",
                          "platform.kafka.passwordSecret.name=kafka-creds",
                          "platform.onlineStore.redisUsername=movierec",
                          "platform.onlineStore.passwordSecret.name=redis-creds"))
    seen = set()
    for o in objs:
        if o["kind"] == "InferenceService":  # its env comes from the ServingRuntime (below)
            continue
        for _where, c in containers_of(o):
            env = {e["name"]: e for e in c.get("env", [])}
            args = [str(a) for a in c.get("args") or []]
            if "kafka.security_protocol=SASL_SSL" in args:
                assert "kafka.sasl_username=ingest" in args
                ref = env["MOVIEREC_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "kafka-creds", "key": "password"}
                seen.add(o["kind"])
            if "data.redis_username=movierec" in args:
                ref = env["MOVIEREC_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "redis-creds", "key": "password"}
    assert "Deployment" in seen, seen
    runtime = next(o for o in objs if o["kind"] == "ServingRuntime")
    env = {e["name"]: e for e in runtime["spec"]["containers"][0]["env"]}
    assert env["MOVIEREC_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kafka-creds"


@pytest.mark.parametrize("values_file", RENDER_CASES, ids=RENDER_IDS)
def test_the_pseudonym_keys_reach_the_ingestor_and_model_server_by_reference(
        values_file: Path | None) -> None:
    objs = rendered(values_file)
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    holders = set()
    for o in objs:
        for _where, c in containers_of(o):
            for env in c.get("env", []):
                if env["name"] == "MOVIEREC_PSEUDONYM_KEYS":
                    assert "value" not in env
                    ref = env["valueFrom"]["secretKeyRef"]
                    ring = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
                    key_id, _, secret = ring.partition("=")
                    assert key_id == "k1" and len(secret) == 48
                    holders.add((o["kind"], " ".join(map(str, c.get("command") or []))))
    ingestor = any(o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-ingestor")
                   for o in objs)
    assert (("Deployment", "python -m ingestor") in holders) == ingestor
    assert ("ServingRuntime", "python -m model_server") in holders
    # the router assigns variants by pseudonym, the canary step recomputes them; nothing else
    # (the trainer, the drift jobs, the other pipeline steps) sees the key
    commands = {command for _, command in holders}
    assert any(c.endswith("python -m experiments router") for c in commands) or not any(
        o["kind"] == "Deployment" and "router" in o["metadata"]["name"] for o in objs)
    assert commands <= {"python -m ingestor", "python -m ingestor erasure-api",
                        "python -m model_server", "python -m experiments router",
                        "python /opt/movierec/pipeline/canary_apply.py --config "
                        "/opt/movierec/pipeline -- python -m experiments canary"}, commands


def test_pseudonyms_can_be_turned_off_or_come_from_an_existing_secret() -> None:
    off = objects(render(None, "pseudonyms.enabled=false"))
    assert not any(e["name"] == "MOVIEREC_PSEUDONYM_KEYS" for o in off
                   for _, c in containers_of(o) for e in c.get("env", []))
    mine = objects(render(None, "pseudonyms.existingSecret=my-keys"))
    assert not [o for o in mine if o["kind"] == "Secret" and "pseudonym" in o["metadata"]["name"]]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for o in mine for _, c in containers_of(o)
            for e in c.get("env", []) if e["name"] == "MOVIEREC_PSEUDONYM_KEYS"}
    assert refs == {"my-keys"}


def test_egress_is_limited_to_dns_the_namespace_and_the_listed_destinations() -> None:
    objs = objects(render(CHART_CI / "standard-values.yaml"))
    egress = [o for o in objs if o["kind"] == "NetworkPolicy" and o["spec"]["policyTypes"] ==
              ["Egress"]]
    assert len(egress) == 1
    spec = egress[0]["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/part-of"] == "movierec"
    rules = spec["egress"]
    assert rules[0]["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert rules[0]["to"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "kube-system"}}}]
    assert rules[1]["to"][0] == {"podSelector": {}} and "ports" not in rules[1]
    assert [r["to"][0]["ipBlock"]["cidr"] for r in rules[2:]] == ["10.0.0.1/32", "10.20.0.0/24"]
    assert [p["port"] for p in rules[3]["ports"]] == [9092, 9093]
    # off by default: no egress policy unless the destinations are listed
    assert not [o for o in objects(render(None)) if o["kind"] == "NetworkPolicy"
                and "Egress" in o["spec"]["policyTypes"]]


def test_the_erasure_api_runs_beside_the_ingestor_with_the_token_and_keys() -> None:
    objs = objects(render(CHART_CI / "standard-values.yaml"))
    ingestor = next(o for o in objs if o["kind"] == "Deployment"
                    and o["metadata"]["name"].endswith("-ingestor"))
    api = next(c for c in ingestor["spec"]["template"]["spec"]["containers"]
               if c["name"] == "erasure-api")
    assert api["command"] == ["python", "-m", "ingestor", "erasure-api"]
    env = {e["name"]: e for e in api["env"]}
    assert {"MOVIEREC_ADMIN_TOKEN", "MOVIEREC_PSEUDONYM_KEYS"} <= {
        n for n, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})}
    policy = next(o for o in objs if o["kind"] == "NetworkPolicy"
                  and o["metadata"]["name"].endswith("-ingestor"))
    erasure = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 8091)
    assert erasure["from"] == [{"podSelector": {}}, {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "accounts"}}}]
