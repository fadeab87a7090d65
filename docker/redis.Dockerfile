# syntax=docker/dockerfile:1
# Redis 7 (Debian's redis-server) for the chart's optional in-cluster online store
# (`redis.enabled`, local clusters only; production points platform.onlineStore at its own Redis).
# Build from the repository root:
#   docker build -f docker/redis.Dockerfile -t ghcr.io/movierec/movierec-redis:0.1.0 .
# Without a registry, `make images` passes a Debian base made here with mmdebstrap as
# --build-arg DEBIAN_IMAGE=... (cluster/images.py).
ARG DEBIAN_IMAGE=debian:bookworm-20251117-slim

FROM ${DEBIAN_IMAGE} AS runtime
LABEL org.opencontainers.image.source="https://github.com/movierec/movierec" \
      org.opencontainers.image.title="movierec-redis"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp movierec
EXPOSE 6379
USER 10001:10001
# no config file: everything on the command line (the chart adds --maxmemory etc.)
ENTRYPOINT ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data"]
