"""Local real services for tests, benchmarks and the demo: Kafka (KRaft), redis, Prometheus."""
