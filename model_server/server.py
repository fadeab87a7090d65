"""Assemble and run the model server from a composed config (the edge: all I/O wiring here)."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from model_server.cache import make_cache
from model_server.cold_start import UserDemographics
from model_server.config import register_configs
from model_server.engine import Engine
from model_server.model import MovierecModel
from model_server.provenance import ProvenanceLog, kafka_sink
from model_server.service import Recommendations
from model_server.swap import ModelHolder
from movierec_core.config import compose, write_resolved
from movierec_core.kafka_security import kafka_python_options
from movierec_core.models.bundle import MANIFEST
from movierec_core.pseudonym import KeyRing
from movierec_core.security import AdminAuth, rate_limiter

log = logging.getLogger(__name__)


def load_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``hydra_configs/model_server.yaml`` with ``key=value`` overrides."""
    register_configs()
    return compose("model_server", overrides)


def make_resolver(cfg: DictConfig):
    """``resolve(ref)`` → bundle dir. ``ref`` None: what the config serves (``serving.model_dir``
    if set, else ``serving.alias`` in the registry); else a registry version/alias, or (with
    ``model_dir`` set) a bundle directory path."""
    serving = cfg.serving
    model_dir = str(serving.model_dir or "")

    def registry():
        from movierec_core.registry import open_registry

        return open_registry(cfg.data.registry_root)

    def resolve(ref: str | None) -> Path:
        if ref is None:
            if model_dir:
                return Path(model_dir)
            return registry().resolve(serving.model_name, serving.alias)
        if model_dir and (Path(ref) / MANIFEST).is_file():
            return Path(ref)
        return registry().resolve(serving.model_name, ref)

    return resolve


def build(cfg: DictConfig) -> MovierecModel:
    """The KServe model with its holder, service and provenance log (not loaded yet)."""
    serving, ms = cfg.serving, cfg.model_server
    scale = int(cfg.data.rating_scale_max)
    ring = KeyRing.from_config(cfg.data)

    def load(path: Path) -> Engine:
        engine = Engine.load(path, rating_scale_max=scale, retrieval=str(serving.retrieval),
                             candidates=int(serving.retrieval_candidates),
                             ranker=bool(serving.ranker),
                             exploration_share=float(serving.exploration_share),
                             exploration_salt=int(serving.exploration_salt),
                             compile_ranker=str(ms.compile_ranker),
                             compile_cache=str(ms.compile_cache_dir or "") or None)
        ring.get(engine.pseudonym_key_id)  # refuses a bundle whose key the ring lacks
        return engine

    holder: ModelHolder[Engine] = ModelHolder(load=load, resolve=make_resolver(cfg))
    store_factory = None
    if ms.online_store:
        def store_factory() -> Any:
            from movierec_core.online_store import open_store

            return open_store(cfg.data)
    demographics = None
    if cfg.metadata_api.url:
        demographics = UserDemographics(cfg.metadata_api.url,
                                        timeout_s=ms.metadata_timeout_ms / 1000.0,
                                        cache_size=ms.metadata_cache_size,
                                        backoff_s=ms.metadata_backoff_s)
    redis_client = None
    if str(ms.cache).lower() == "redis" and ms.online_store and \
            str(cfg.data.online_store_backend).lower() == "redis":
        from movierec_core.online_store import open_store

        redis_client = open_store(cfg.data)._redis
    cache = make_cache(str(ms.cache), max_entries=int(ms.cache_max_entries),
                       ttl_s=float(ms.cache_ttl_s), redis_client=redis_client)
    service = Recommendations(holder, store_factory=store_factory, demographics=demographics,
                              deadline_ms=serving.deadline_ms, cost_lambda=serving.cost_lambda,
                              fold_in=serving.fold_in, history_limit=ms.history_limit,
                              threads=ms.rank_threads, pseudonyms=ring, cache=cache,
                              clock=str(serving.clock))
    sink = (kafka_sink(cfg.kafka.bootstrap, ms.provenance_topic, kafka_python_options(cfg.kafka))
            if ms.provenance_topic else None)
    provenance = ProvenanceLog(serving.provenance_log or None, kafka_sink=sink,
                               max_queue=ms.provenance_queue_size,
                               max_bytes=ms.provenance_max_bytes, backups=ms.provenance_backups,
                               pseudonyms=ring.current)
    return MovierecModel(serving.model_name, holder, service, provenance, default_k=serving.k,
                         max_k=ms.max_k)


def quiet_request_logs(access_log: bool, timings: bool) -> None:
    """Per-request log lines (uvicorn access log, KServe's timing middleware) cost more than
    ranking does; the provenance log already records every request."""
    if not access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    if not timings:
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    # httpx logs each request's URL at INFO, and the metadata API's URLs name users by id: the
    # logs hold no user ids (docs/security.md; found in the ingestor's logs on the cluster)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def install_event_loop(kind: str) -> str:
    """Make the loop KServe documents the one it runs on; returns the loop in use.

    KServe 0.20's ``event_loop`` defaults to ``auto`` ("uvloop if available") but, with one
    worker, ``ModelServer.start`` serves under ``asyncio.run()`` with the default policy, so the
    stdlib loop always runs whatever the setting says. Installing uvloop's policy first gives
    the documented behaviour (measured on ``bench/serve.py``: +15-18 % requests/s at c=16).
    ``asyncio``: the stdlib loop.
    """
    import asyncio

    if kind not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"model_server.event_loop must be auto, uvloop or asyncio, not {kind!r}")
    if kind == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # ModelServer.setup_event_loop() calls asyncio.get_event_loop(), which under uvloop's
    # policy raises unless a loop is set
    asyncio.set_event_loop(asyncio.new_event_loop())
    return "uvloop"


def run(cfg: DictConfig) -> None:
    """Load the model, mount the routes, serve until SIGTERM/SIGINT."""
    import kserve
    from kserve import model_server as kserve_model_server
    from threadpoolctl import threadpool_limits

    from model_server import app as routes

    serving, ms = cfg.serving, cfg.model_server
    # One BLAS thread: a 20K x 64 mat-vec gains nothing from more, and the spare core serves
    # other requests (and the implicit fold-in warns about multi-threaded BLAS).
    threadpool_limits(1)
    model = build(cfg)
    model.load(wait=bool(serving.wait_for_model) and not serving.model_dir)
    if not serving.model_dir:
        model.holder.start_polling(serving.poll_alias_s)
    if serving.provenance_log:
        write_resolved(cfg, Path(serving.provenance_log).parent,
                       f"model_server-{serving.http_port}.config.yaml")
    app = kserve_model_server.app
    routes.install_validation_handler(app)
    routes.mount(app, model, k=serving.k, admin=ms.admin_enabled,
                 auth=AdminAuth.from_environment(str(ms.admin_token_file or "")),
                 limiter=rate_limiter(float(ms.rate_limit_rps), float(ms.rate_limit_burst),
                                      [str(c) for c in ms.rate_limit_exempt]),
                 max_body_bytes=int(ms.max_body_bytes), request_timings=bool(ms.log_requests))
    server = kserve.ModelServer(http_port=serving.http_port, workers=ms.workers,
                                enable_grpc=ms.grpc_port > 0, grpc_port=ms.grpc_port or 8081,
                                enable_latency_logging=ms.log_requests)
    quiet_request_logs(access_log=ms.access_log, timings=ms.log_requests)
    log.info("event loop: %s", install_event_loop(str(ms.event_loop)))
    # KServe, FastAPI and the model are loaded: freeze them out of the cyclic collector's
    # full passes (what remains to scan is per-request garbage)
    gc.collect()
    gc.freeze()
    try:
        server.start([model])
    finally:
        model.holder.stop()
        model.service.close()
        if model.provenance is not None:
            model.provenance.close()
