#!/bin/sh
# One KRaft node (broker + controller) configured from the environment; the data directory is
# formatted once (its meta.properties marks it) and kept across restarts. Logs go to stdout.
#   KAFKA_CLUSTER_ID            cluster id for the first format (22 base64url characters)
#   KAFKA_LISTENERS             e.g. PLAINTEXT://:9092,EXTERNAL://:9094,CONTROLLER://:9093
#   KAFKA_ADVERTISED_LISTENERS  e.g. PLAINTEXT://kafka.ns.svc:9092,EXTERNAL://172.31.254.2:30094
#   KAFKA_LISTENER_SECURITY_PROTOCOL_MAP, KAFKA_NUM_PARTITIONS, KAFKA_RETENTION_HOURS, KAFKA_HEAP
set -eu
: "${KAFKA_CLUSTER_ID:?KAFKA_CLUSTER_ID must be set}"
: "${KAFKA_LISTENERS:=PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093}"
: "${KAFKA_ADVERTISED_LISTENERS:=PLAINTEXT://localhost:9092}"
: "${KAFKA_LISTENER_SECURITY_PROTOCOL_MAP:=PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT}"
: "${KAFKA_NUM_PARTITIONS:=4}"
: "${KAFKA_RETENTION_HOURS:=168}"
props=/tmp/server.properties
cat > "$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=${KAFKA_LISTENERS}
advertised.listeners=${KAFKA_ADVERTISED_LISTENERS}
listener.security.protocol.map=${KAFKA_LISTENER_SECURITY_PROTOCOL_MAP}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=${KAFKA_DATA_DIR}
num.partitions=${KAFKA_NUM_PARTITIONS}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=4194304
log.retention.hours=${KAFKA_RETENTION_HOURS}
PROPS
cp="/opt/kafka/libs/*"
if [ ! -f "${KAFKA_DATA_DIR}/meta.properties" ]; then
  java -cp "$cp" kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" -c "$props"
fi
exec java "-Xmx${KAFKA_HEAP}" "-Xms${KAFKA_HEAP}" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
  -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties \
  -cp "$cp" kafka.Kafka "$props"
