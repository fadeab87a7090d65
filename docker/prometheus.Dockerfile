# syntax=docker/dockerfile:1
# Prometheus v3.16 for the chart's optional in-cluster Prometheus (`prometheus.enabled`, clusters
# without the Prometheus operator): it finds the release's pods by Kubernetes service discovery
# and evaluates the platform's alert rules. Debian's prometheus package (2.42) is built without
# Kubernetes service discovery, so the binaries come from the build context, built from the Go
# module github.com/prometheus/prometheus@v0.316.0 by `make prometheus-build` (.cache/bin).
# Build from the repository root:
#   docker build -f docker/prometheus.Dockerfile -t ghcr.io/movierec/movierec-prometheus:0.1.0 .
# Without a registry, `make images` passes a Debian base made here with mmdebstrap as
# --build-arg DEBIAN_IMAGE=... (cluster/images.py).
ARG DEBIAN_IMAGE=debian:bookworm-20251117-slim

FROM ${DEBIAN_IMAGE} AS runtime
LABEL org.opencontainers.image.source="https://github.com/movierec/movierec" \
      org.opencontainers.image.title="movierec-prometheus"
RUN groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp movierec
COPY .cache/bin/prometheus .cache/bin/promtool /usr/bin/
EXPOSE 9090
USER 10001:10001
ENTRYPOINT ["/usr/bin/prometheus"]
