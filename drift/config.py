"""The ``drift`` config group: windows, thresholds, outputs and the retrain trigger.

Composed by ``python -m drift`` from ``hydra_configs/drift.yaml`` (defaults ``data: local``,
``drift: default``); the schema is registered as group ``drift``, name ``schema``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

ALL_DETECTORS = [
    "demographics",  # age / gender / occupation of users active in the window
    "signups",  # the same for accounts created in the window
    "genre_mix",  # primary genre of each watched (user, movie)
    "watch_minutes",  # distinct minutes watched per (user, movie)
    "ratings",  # stars of each rating
    "item_popularity",  # reference popularity percentile of each watched movie
    "recommendation_scores",  # position-weighted popularity score of each recommendation list
]


@dataclass
class RetrainConfig:
    """What happens when drift is detected."""

    enabled: bool = True
    # Detectors whose drift triggers a retrain (the others only alert).
    on: list[str] = field(default_factory=lambda: list(ALL_DETECTORS))
    mode: str = "local"  # local (run command) | kubernetes (Argo Workflow) | off
    # Local: the trainer entry point; "{python}" is replaced with this interpreter.
    command: list[str] = field(default_factory=lambda: ["{python}", "-m", "trainer"])
    timeout_s: float = 3600.0
    # Kubernetes: a Workflow referencing the training WorkflowTemplate.
    namespace: str = "movierec"
    workflow_template: str = "movierec-train"
    service_account: str = "movierec-trainer"
    submit: bool = True  # False: print the Workflow instead of creating it
    arguments: dict[str, str] = field(default_factory=lambda: {"reason": "drift"})


@dataclass
class OnlineConfig:
    """``python -m drift online``: detectors over KServe payload-logger CloudEvents."""

    host: str = "127.0.0.1"
    port: int = 8095
    reference_size: int = 500  # first N payloads (or a lake window) form the reference
    window_size: int = 500  # the most recent N payloads form the current window
    check_every: int = 100  # run the detectors after every N new payloads
    load_users: bool = True  # join requested users with the lake's users table


@dataclass
class DriftConfig:
    """Batch drift job: reference window vs current window from the lake."""

    # Windows, in event time. Empty end: the newest event in the lake.
    current_end: str = ""
    current_hours: float = 24.0
    # Equal lengths compare like with like: who is active in a day differs from a week.
    reference_hours: float = 24.0
    # Statistics. ``p_val`` is the family-wise budget over all detectors: each detector gets
    # p_val / n_detectors, and alibi's correction splits that over its features.
    p_val: float = 0.01
    correction: str = "bonferroni"  # bonferroni | fdr (alibi-detect)
    detectors: list[str] = field(default_factory=lambda: list(ALL_DETECTORS))
    min_samples: int = 30  # fewer units in either window: detector skipped
    max_samples: int = 5000  # units per window (seeded subsample) to bound runtime
    # Units per user per window (seeded sample; 0: all). Watches are capped at one per user:
    # a user's watches share their taste, and uncapped they raise false alarms. Lists and
    # ratings are far less clustered, and are where a stale model shows first.
    max_per_user: int = 1
    max_per_user_by_detector: dict[str, int] = field(
        default_factory=lambda: {"recommendation_scores": 0, "ratings": 0})
    seed: int = 0
    # Outputs.
    write_report: bool = True  # <lake_root>/_drift/<timestamp>.json
    pushgateway: str = ""  # host:port; empty: no push
    push_job: str = "movierec-drift"
    serve_port: int = 0  # > 0: keep serving /metrics on this port (long-running mode)
    interval_s: float = 3600.0  # long-running mode: seconds between runs
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)


def register_configs() -> None:
    """Register the ``drift`` schema (idempotent)."""
    ConfigStore.instance().store(group="drift", name="schema", node=DriftConfig)
