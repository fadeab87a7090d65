# syntax=docker/dockerfile:1
# Apache Kafka 4.1.1 (KRaft, one combined broker+controller node) from the official jars on Maven
# Central, for the chart's optional in-cluster broker (`kafka.enabled`, local clusters only).
# The jars come from the build context: run `make kafka-fetch` first (devstack/kafka/pom.xml).
# Build from the repository root:
#   docker build -f docker/kafka.Dockerfile -t ghcr.io/movierec/movierec-kafka:0.1.0 .
# Without a registry, `make images` builds it with buildah on a Debian base with OpenJDK 17 made
# here with mmdebstrap, passed as --build-arg JAVA_IMAGE=... (cluster/images.py).
ARG JAVA_IMAGE=eclipse-temurin:17.0.15_6-jre-jammy

FROM ${JAVA_IMAGE} AS runtime
LABEL org.opencontainers.image.source="https://github.com/movierec/movierec" \
      org.opencontainers.image.title="movierec-kafka"
RUN groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp movierec
COPY .cache/kafka/libs/ /opt/kafka/libs/
COPY devstack/kafka/log4j.properties /opt/kafka/config/log4j.properties
COPY docker/kafka/entrypoint.sh /opt/kafka/bin/entrypoint.sh
EXPOSE 9092 9093 9094
ENV KAFKA_DATA_DIR=/var/lib/kafka/data \
    KAFKA_HEAP=512m \
    HOME=/tmp
USER 10001:10001
ENTRYPOINT ["/opt/kafka/bin/entrypoint.sh"]
