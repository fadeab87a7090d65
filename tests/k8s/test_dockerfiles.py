"""Dockerfiles (not buildable here: no Docker daemon): one per deployable and per chart image,
multi-stage, pinned base image, non-root user, entry point `python -m <package>`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.k8s.conftest import CHART, REPO_ROOT, containers_of, objects, render

DOCKER = REPO_ROOT / "docker"
PACKAGES = {"ingestor": "ingestor", "model-server": "model_server", "experiments": "experiments",
            "trainer": "trainer", "drift": "drift", "simulator": "simulator"}
PINNED_PYTHON = re.compile(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", re.M)


# the chart's optional in-release infrastructure for local clusters (kafka/redis/prometheus.enabled)
INFRA = {"kafka": "JAVA_IMAGE", "redis": "DEBIAN_IMAGE", "prometheus": "DEBIAN_IMAGE",
         "pushgateway": "DEBIAN_IMAGE"}


def test_one_dockerfile_per_deployable_and_per_infrastructure_image() -> None:
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(
        f"{c}.Dockerfile" for c in [*PACKAGES, *INFRA])


@pytest.mark.parametrize("component", sorted(INFRA))
def test_infrastructure_images_take_a_swappable_pinned_base_and_run_as_the_chart_user(
        component: str) -> None:
    text = (DOCKER / f"{component}.Dockerfile").read_text()
    arg = INFRA[component]
    base = re.search(rf"^ARG {arg}=(\S+)$", text, re.M)
    assert base and ":" in base.group(1) and "latest" not in base.group(1)
    assert re.search(rf"^FROM \${{{arg}}}", text, re.M)
    assert re.findall(r"^USER (\S+)$", text, re.M) == ["10001:10001"]


def test_every_chart_image_has_a_dockerfile() -> None:
    images = {c["image"] for o in objects(render(None)) for _, c in containers_of(o) if "image" in c}
    components = {re.match(r".*/movierec-([a-z-]+):", image).group(1) for image in images}
    assert components == {"ingestor", "model-server", "experiments", "trainer", "drift"}
    assert all((DOCKER / f"{c}.Dockerfile").exists() for c in components)
    local = {c["image"] for o in objects(render(CHART / "ci" / "local-values.yaml"))
             for _, c in containers_of(o) if "image" in c}
    local_components = {re.match(r"localhost/movierec-([a-z-]+):", i).group(1) for i in local}
    assert local_components == {"ingestor", "model-server", "experiments", "drift", "kafka",
                                "redis", "prometheus", "pushgateway", "trainer"}
    assert all((DOCKER / f"{c}.Dockerfile").exists() for c in local_components)


@pytest.mark.parametrize("component", sorted(PACKAGES))
def test_dockerfile_is_multistage_pinned_and_non_root(component: str) -> None:
    text = (DOCKER / f"{component}.Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M)
    assert [alias for _, alias in froms] == ["build", "runtime"]
    assert PINNED_PYTHON.search(text), "base image must be a pinned python:3.11.x-slim-bookworm tag"
    assert "latest" not in text
    assert "COPY --from=build /opt/venv /opt/venv" in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user == ["10001:10001"]  # numeric, so runAsNonRoot can verify it
    package = PACKAGES[component]
    assert re.search(rf'^ENTRYPOINT \["python", "-m", "{package}"\]$', text, re.M)
    assert f"COPY {package}/ {package}/" in text
    assert "COPY hydra_configs/ hydra_configs/" in text


@pytest.mark.parametrize("path", sorted(DOCKER.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_dockerfile_user_matches_chart_security_context(path: Path) -> None:
    import yaml

    values = yaml.safe_load((REPO_ROOT / "charts" / "movierec" / "values.yaml").read_text())
    uid, gid = values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]
    assert f"USER {uid}:{gid}" in path.read_text()
