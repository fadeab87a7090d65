"""The ingestor's config schema (Hydra group ``ingestor``, registered as ``ingestor/schema``)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class IngestorConfig:
    """How the ingestor consumes, batches, writes and enriches."""

    # consumer and batches; consumer: kafka-python | confluent (librdkafka, the `ingest` extra)
    consumer: str = "kafka-python"
    # a batch is written and committed at this many records or values' bytes... (the store
    # folds each batch per (user, movie): the bigger the batch, the fewer rows a record costs;
    # docs/ingestor.md has the measurements). The bytes bound keeps a backlog of long lines
    # from holding a batch of 200,000 of them in memory
    batch_max_records: int = 200_000
    batch_max_bytes: int = 64 * 1024 * 1024
    batch_max_wait_s: float = 1.0  # ...or after this long, whichever comes first
    poll_timeout_ms: int = 200
    fetch_max_bytes: int = 64 * 1024 * 1024
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    auto_offset_reset: str = "earliest"
    # kafka-python verifies CRC32C in pure Python (~8 MB/s) unless the crc32c package is
    # installed; TCP already checksums the local hop, so it is off by default
    check_crcs: bool = False
    session_timeout_ms: int = 10_000
    # dead letters: the producer must carry the largest line the broker accepts
    dlq_max_request_bytes: int = 4 * 1024 * 1024
    # retries while the broker is unavailable (start or mid-run)
    connect_timeout_s: float = 5.0  # first contact with the broker, per attempt
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 10.0
    shutdown_commit_timeout_s: float = 30.0
    # leave and rejoin the group after this long without partitions (0: never)
    rejoin_after_s: float = 60.0
    # lake maintenance: compaction and watch sessions
    session_gap_s: float = 1800.0  # a watch session ends after a gap longer than this
    compact_min_files: int = 16  # a partition with this many files is merged into one
    maintenance_interval_s: float = 60.0  # 0: only at shutdown and via `compact`
    # retention (ingestor/retention.py; 0: keep for ever), enforced with lake maintenance
    raw_retention_days: int = 0  # lake partitions of events and sessions older than this
    online_store_retention_days: int = 0  # online-store interactions untouched this long
    snapshots_keep: int = 0  # newest snapshots kept (plus those kept models were trained on)
    registry_keep: int = 0  # newest versions per model kept (plus aliased ones and...)
    champion_lineage_keep: int = 3  # ...this many of the champion's previous versions
    dlq_retention_days: int = 30  # the dead-letter topic's retention.ms at creation (0: broker's)
    # outputs
    online_store: bool = True
    # a batch's lake files and online-store upserts overlap the next batch's poll and parse;
    # its offsets are committed once they are done (off: in line, before the commit)
    pipelined_store: bool = True
    enrichment: bool = True
    enrichment_interval_s: float = 1.0
    enrichment_max_backoff_s: float = 30.0
    metrics_port: int = 9101  # 0: no /metrics server
    # `python -m ingestor erasure-api` (ingestor/erasure_api.py): the account system's erasure
    # API, behind the admin token (MOVIEREC_ADMIN_TOKEN or this file; none: loopback only)
    admin_host: str = "127.0.0.1"
    admin_port: int = 8091
    admin_token_file: str = ""
    # consumer processes in this group started by `python -m ingestor` (each takes a share of
    # the partitions; metrics on metrics_port + i)
    workers: int = 1
    # stop by itself once every assigned partition is drained (bench, demo batch runs); 0: never
    exit_when_idle_s: float = 0.0
    log_level: str = "INFO"


def register_configs() -> None:
    ConfigStore.instance().store(group="ingestor", name="schema", node=IngestorConfig)
