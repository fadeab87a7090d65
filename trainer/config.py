"""The trainer's config schema (group ``trainer``, name ``schema``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from movierec_core.models.retrieval import RetrievalConfig
from trainer.ranker import RankerSettings


@dataclass
class ConfidenceConfig:
    """Weights of :func:`movierec_core.models.confidence` (see docs/trainer.md)."""

    watch: float = 1.0
    rating: float = 1.0
    dislike_below: float = 0.0
    default_runtime: float = 100.0


@dataclass
class TuneConfig:
    """Optuna search on a validation split carved from the training events (never test)."""

    enabled: bool = False
    models: list[str] = field(default_factory=lambda: ["als", "ease"])
    n_trials: int = 6
    validation_fraction: float = 0.15
    metric: str = "ndcg@10"
    seed: int = 42


@dataclass
class BatchConfig:
    """``batch-recommend``: the production configuration for MovieLens-format CSVs."""

    # measured on ml-latest-small (docs/trainer.md): EASE on 0/1, the 2,000 most-rated items
    model: dict[str, Any] = field(default_factory=lambda: {"name": "ease", "l2": 300.0,
                                                           "max_items": 2000, "binary": True})
    rating_min: float = 0.5
    rating_max: float = 5.0


@dataclass
class RecencySettings:
    """How to weigh time (issue 22): each half-life (hours; 0 = no decay) weighs a pair's
    confidence by 0.5 ** (age / half-life); the temporal evaluation fits every candidate with
    each and keeps the best pair for the registered model (trainer/data.py::decayed)."""

    half_lives_h: list[float] = field(default_factory=lambda: [0.0])
    # per-user recency (factor models): the item factors learn from every event at the
    # half-life above; each user's vector is folded in again from their own confidences
    # weighed by this half-life, and the model server folds in the online store's events the
    # same way at request time. Users whose tastes moved are then described by their recent
    # events without discarding what everyone's history says about the movies. 0: off.
    user_half_lives_h: list[float] = field(default_factory=lambda: [0.0])


@dataclass
class TrainerConfig:
    snapshot: str = "latest"  # a snapshot id under data.lake_root/_snapshots, or "latest"
    model_name: str = "movierec"  # registry model name (the server's serving.model_name)
    candidates: list[str] = field(default_factory=lambda: ["als", "bpr", "ease", "itemknn", "popularity"])
    select_metric: str = "ndcg@10"  # the candidate with the best warm value is registered
    test_fraction: float = 0.2  # of events at/after the split time T (when split_time empty)
    split_time: str = ""  # ISO time T; empty: the quantile given by test_fraction
    evaluate: bool = True  # false: no split/comparison; the first candidate is registered
    # (the registered model is always refitted on every event of the snapshot)
    ks: list[int] = field(default_factory=lambda: [10, 20])
    light_max_interactions: int = 10  # warm users with ≤ this many training items are "light"
    eval_max_users: int = 20000  # evaluate a seeded sample of at most this many warm users
    min_user_interactions: int = 1
    min_item_interactions: int = 1
    rating_scale_max: int = 0  # 0: data.rating_scale_max
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)
    cold_start_min_users: int = 5
    cold_start_list_size: int = 100
    # the ANN index built into a factor model's bundle (movierec_core/models/retrieval.py)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    recency: RecencySettings = field(default_factory=RecencySettings)
    # the learned second stage (trainer/ranker.py): trained from the snapshot's logged requests
    # for a factor model, kept in the bundle only when it beats the factor order on the latest
    # requests (nothing happens without logged requests)
    ranker: RankerSettings = field(default_factory=RankerSettings)
    tune: TuneConfig = field(default_factory=TuneConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    num_threads: int = 0  # implicit's threads (0 = all cores)
    seed: int = 42
    output_dir: str = "data/trainer_runs"  # run directories (report, resolved config)
    report_plots: bool = True
    promote: bool = False  # also move champion to the new version
    # false: write the bundle (in output_dir) and stop; `python -m trainer register <bundle>`
    # registers it later (the pipeline registers only what passed its quality gate)
    register: bool = True
    pushgateway: str = ""  # host:port of a Prometheus Pushgateway; empty: don't push
    code_version: str = ""  # empty: `git rev-parse HEAD` of the repo


def register_trainer_config() -> None:
    ConfigStore.instance().store(group="trainer", name="schema", node=TrainerConfig)
