"""movierec ingestor: Kafka telemetry -> dead-letter topic, Parquet lake, online store."""
