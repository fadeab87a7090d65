# syntax=docker/dockerfile:1
# Prometheus Pushgateway (Debian's prometheus-pushgateway) for the chart's optional in-cluster
# Pushgateway (`pushgateway.enabled`, local clusters): batch steps (trainer, canary, drift job)
# push their metrics there and Prometheus scrapes it.
# Build from the repository root:
#   docker build -f docker/pushgateway.Dockerfile -t ghcr.io/movierec/movierec-pushgateway:0.1.0 .
# Without a registry, `make images` passes a Debian base made here with mmdebstrap as
# --build-arg DEBIAN_IMAGE=... (cluster/images.py).
ARG DEBIAN_IMAGE=debian:bookworm-20251117-slim

FROM ${DEBIAN_IMAGE} AS runtime
LABEL org.opencontainers.image.source="https://github.com/movierec/movierec" \
      org.opencontainers.image.title="movierec-pushgateway"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-pushgateway \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp movierec
EXPOSE 9091
USER 10001:10001
ENTRYPOINT ["/usr/bin/prometheus-pushgateway"]
