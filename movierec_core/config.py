"""Typed config schemas shared by every deployable, and the one way entry points compose config.

Hydra as the model: dataclass schemas registered in the ConfigStore, YAML groups in
``hydra_configs/`` (``kafka``, ``data``, ``model``, ``serving``, ...), one primary config per
entry point (``hydra_configs/<entry>.yaml``). Entry points call :func:`compose` once with the
command line's ``key=value`` overrides and pass the typed result down; nothing else reads the
environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose as _hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "hydra_configs"
SHARED_DIR = REPO_ROOT.parent / "shared"


@dataclass
class KafkaConfig:
    """Where the telemetry lives."""

    bootstrap: str = "127.0.0.1:9092"
    topic: str = "movielog"
    dlq_topic: str = ""  # empty: "<topic>.dlq"
    group_id: str = "movierec-ingestor"
    partitions: int = 4
    client_id: str = "movierec"
    # transport and authentication (movierec_core/kafka_security.py): PLAINTEXT | SSL |
    # SASL_PLAINTEXT | SASL_SSL; SASL mechanism PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 with this
    # user, its password in MOVIEREC_KAFKA_PASSWORD (a Secret, never an argument)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    ssl_cafile: str = ""  # CA bundle that signed the brokers' certificates (SSL, SASL_SSL)

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topic}.dlq"


@dataclass
class DataConfig:
    """Where data lands: the Parquet lake, the online store, the model registry."""

    lake_root: str = "data/lake"
    registry_root: str = "data/registry"
    online_store_backend: str = "sqlite"  # sqlite | redis
    online_store_path: str = "data/online.sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"  # rediss:// for TLS; no credentials in it
    redis_username: str = ""  # ACL user; its password in MOVIEREC_REDIS_PASSWORD
    movielens_dir: str = str(SHARED_DIR / "data" / "ml-latest-small")
    rating_scale_max: int = 5
    # pseudonymous user ids (movierec_core/pseudonym.py): "<key id>=<secret>" entries, current
    # first, from MOVIEREC_PSEUDONYM_KEYS or this file (a mounted Secret); none: raw ids
    pseudonym_keys_file: str = ""


@dataclass
class MetadataApiConfig:
    """The user/movie metadata API (EVENTS.md)."""

    url: str = "http://127.0.0.1:8080"
    timeout_s: float = 2.0
    bulk_size: int = 200


@dataclass
class ModelConfig:
    """A recommender candidate and its hyper-parameters."""

    name: str = "als"
    factors: int = 64
    iterations: int = 15
    regularization: float = 0.05
    alpha: float = 1.0
    learning_rate: float = 0.01
    neighbours: int = 100
    l2: float = 500.0
    random_state: int = 42
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServingConfig:
    """The model server and what it ranks with."""

    model_name: str = "movierec"
    http_port: int = 8082
    model_dir: str = ""  # a bundle directory (KServe's /mnt/models); empty: registry alias
    alias: str = "champion"
    k: int = 20
    deadline_ms: float = 150.0
    cost_lambda: float = 0.0
    fold_in: bool = True
    poll_alias_s: float = 2.0
    # a fresh install has no model yet: start anyway, not ready (503) until the alias appears
    wait_for_model: bool = True
    provenance_log: str = "data/provenance.jsonl"
    # exact: score every item that can make the list; ann: two stages, the bundle's ANN index
    # retrieves retrieval_candidates items that are then scored exactly (cost included)
    retrieval: str = "exact"
    retrieval_candidates: int = 200
    # the bundle's learned second stage (trainer.ranker), when it has one: it orders the first
    # stage's best candidates over movierec_core/features.py; false: factor scores alone
    ranker: bool = True
    # this share of users (by a salted hash of their id) get their lists shuffled, so the
    # trainer can read position bias off them (movierec_core/models/ranker.py::exploring);
    # trainer.ranker.exploration_share/_salt must say the same
    exploration_share: float = 0.0
    exploration_salt: int = 20260
    # the instant the ranker's time features (hour, hours since the user's last event) are
    # taken at: events = the online store's event-time watermark (what the trainer's lake
    # times are on; a simulated clock too), wall = this machine's clock
    clock: str = "events"


def register_configs() -> None:
    """Register the shared schemas (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(group="kafka", name="schema", node=KafkaConfig)
    cs.store(group="data", name="schema", node=DataConfig)
    cs.store(group="metadata_api", name="schema", node=MetadataApiConfig)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="serving", name="schema", node=ServingConfig)


def compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose ``hydra_configs/<config_name>.yaml`` with command-line style overrides."""
    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name=config_name):
        cfg = _hydra_compose(config_name=config_name, overrides=list(overrides or []))
    OmegaConf.resolve(cfg)
    return cfg


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split a command line into (positional/flag args, Hydra ``key=value`` overrides)."""
    args, overrides = [], []
    for token in argv:
        if "=" in token and not token.startswith("-"):
            overrides.append(token)
        else:
            args.append(token)
    return args, overrides


def asks_help(args: list[str]) -> bool:
    """True when a command line asks for help (``-h``/``--help`` anywhere): every entry point then
    prints its usage and exits 0 instead of starting a service."""
    return any(a in ("-h", "--help") for a in args)


def write_resolved(cfg: DictConfig, directory: Path | str, name: str = "config.yaml") -> Path:
    """Write the resolved config next to a run's outputs (lineage)."""
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path
