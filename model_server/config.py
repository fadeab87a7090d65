"""The model server's own config group (``model_server``), next to the shared ``serving`` group.

``serving`` (shared, :class:`movierec_core.config.ServingConfig`) says *what* is served: model
name, port, bundle/alias, k, deadline, cost lambda, fold-in, alias polling, provenance file.
This group holds knobs that only this process has: workers, timeouts for the metadata API,
cache sizes, provenance to Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore


@dataclass
class ModelServerConfig:
    """Process-level settings of ``python -m model_server``."""

    workers: int = 1  # uvicorn workers; scale out with replicas, not workers
    grpc_port: int = 0  # 0: gRPC off (replicas on one host would fight over 8081)
    max_k: int = 100  # largest k accepted on V1/V2
    online_store: bool = True  # read recent events (exclusion + fold-in) from data.online_store_*
    history_limit: int = 500  # online-store interactions read per request
    metadata_timeout_ms: float = 60.0  # budget for one /user/<id> lookup (cold start)
    metadata_cache_size: int = 100_000
    metadata_backoff_s: float = 5.0  # after a metadata API failure, skip lookups this long
    provenance_topic: str = ""  # Kafka topic for provenance records; empty: file only
    provenance_queue_size: int = 100_000
    # rotate the provenance file past this size (0: never), keeping this many old files
    provenance_max_bytes: int = 64 * 1024 * 1024
    provenance_backups: int = 2
    admin_enabled: bool = True  # GET /admin/model, POST /admin/reload
    # admin endpoints (and KServe's /v2/repository load/unload): a Bearer token from
    # MOVIEREC_ADMIN_TOKEN or this file (a mounted Secret); without one, loopback callers only
    admin_token_file: str = ""
    max_body_bytes: int = 262_144  # request bodies beyond: 413 before anything is parsed
    rate_limit_rps: float = 0.0  # per client on /recommend (token bucket); 0: off
    rate_limit_burst: float = 20.0
    rate_limit_exempt: list[str] = field(default_factory=list)  # CIDRs of internal callers
    log_requests: bool = False  # KServe's per-request latency log lines (off: hot path)
    access_log: bool = False  # uvicorn access log (off: the provenance log has every request)
    event_loop: str = "auto"  # auto (uvloop if installed) | uvloop | asyncio; see server.py
    # the recommendation cache (model_server/cache.py): off | memory | redis (the online
    # store's Redis, shared by replicas); an entry lives until the user's events or the model
    # change, at most cache_ttl_s
    cache: str = "memory"
    cache_ttl_s: float = 300.0
    cache_max_entries: int = 20_000  # ~0.5 KB each (in-process)
    rank_threads: int = 0  # 0: rank inline on the event loop (fastest); N: on N threads, where
    # the deadline can also cut off a slow online-store read (see model_server/service.py)
    # the bundle's learned ranker as machine code (lleaves; ~5x faster than LightGBM's predict
    # for 50 candidates): off | background (LightGBM scores until compiled) | blocking (compiled
    # before the version serves); compiled rankers are kept in compile_cache_dir (default: the
    # temp dir's movierec-compiled), keyed by the model and the CPU
    compile_ranker: str = "background"
    compile_cache_dir: str = ""


def register_configs() -> None:
    """Register the ``model_server`` schema (idempotent)."""
    ConfigStore.instance().store(group="model_server", name="schema", node=ModelServerConfig)
