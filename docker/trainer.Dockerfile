# syntax=docker/dockerfile:1
# Trainer: `python -m trainer` (train), evaluate, register, promote: the Argo pipeline steps.
# Build from the repository root:
#   docker build -f docker/trainer.Dockerfile -t ghcr.io/movierec/movierec-trainer:0.1.0 .
# Without a registry, `make images` builds it with buildah on a Debian base made here with
# mmdebstrap, passed as --build-arg PYTHON_IMAGE=... (cluster/images.py, docs/cluster.md).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# the core dependencies and the `trainer` extra (pyproject.toml), at the tested lock's versions (constraints.txt);
# the source is copied as-is into the runtime stage so hydra_configs/ stays next to the packages
RUN python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\\n'.join(p['dependencies'] + p['optional-dependencies']['trainer']))" > requirements.txt \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip==25.3 \
 && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.source="https://github.com/movierec/movierec" \
      org.opencontainers.image.title="movierec-trainer"
# libgomp1: implicit's compiled ALS/BPR link OpenMP (the slim and Debian bases lack it)
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp movierec
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY movierec_core/ movierec_core/
COPY hydra_configs/ hydra_configs/
COPY trainer/ trainer/
# the learned ranker's first stage is the serving engine itself (model_server/engine.py: the
# same ranking code at training and serving time; it needs numpy/scipy only, not KServe)
COPY model_server/ model_server/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
ENTRYPOINT ["python", "-m", "trainer"]
