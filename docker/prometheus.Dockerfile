# syntax=docker/dockerfile:1
# Prometheus 2.42 (Debian's package) for the chart's optional in-cluster Prometheus
# (`prometheus.enabled`, clusters without the Prometheus operator): it scrapes the release's
# pods by Kubernetes service discovery and evaluates the platform's alert rules.
# Build from the repository root:
#   docker build -f docker/prometheus.Dockerfile -t ghcr.io/movierec/movierec-prometheus:0.1.0 .
# Without a registry, `make images` passes a Debian base made here with mmdebstrap as
# --build-arg DEBIAN_IMAGE=... (cluster/images.py).
ARG DEBIAN_IMAGE=debian:bookworm-20251117-slim

FROM ${DEBIAN_IMAGE} AS runtime
LABEL org.opencontainers.image.source="https://github.com/movierec/movierec" \
      org.opencontainers.image.title="movierec-prometheus"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp movierec
EXPOSE 9090
USER 10001:10001
ENTRYPOINT ["/usr/bin/prometheus"]
