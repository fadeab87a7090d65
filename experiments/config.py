"""Typed config of the experiments package (Hydra group ``experiments``, schema ``schema``).

One experiment config drives the local router, the Istio rendering and the canary controller,
so local and cluster routing agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore


@dataclass
class VariantConfig:
    """One arm of the experiment: a name (a DNS label, the Istio subset), a traffic weight in
    percent, and the base URLs of its model server replicas (tried round-robin, failover)."""

    name: str = "champion"
    weight: float = 100.0
    urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8090"])


@dataclass
class IstioConfig:
    """What the Istio VirtualService/DestinationRule rendering needs (mirrors the chart values)."""

    name: str = "movierec-router"
    namespace: str = "movierec"
    host: str = ""  # empty: <name>.<namespace>.svc.cluster.local
    port: int = 8082
    variant_header: str = "x-movierec-variant"
    timeout: str = "2s"
    retry_attempts: int = 2
    per_try_timeout: str = "500ms"


@dataclass
class CanaryConfig:
    """The canary rollout policy and where it acts."""

    champion: str = "champion"
    challenger: str = "challenger"
    challenger_urls: list[str] = field(default_factory=list)  # empty: keep the router's
    steps: list[int] = field(default_factory=lambda: [5, 25, 50, 100])
    window_s: float = 60.0  # analysis window (wall clock)
    max_windows_per_step: int = 3  # undecided this many windows: roll back
    min_requests: int = 50  # per variant and window before a verdict on watch-through
    max_error_rate_delta: float = 0.02  # challenger error rate - champion's
    error_tau: float = 0.1  # the error guardrail's sequential mixing sd (a gross failure)
    # mean latency per user (sequential): significantly slower by more than this rolls back
    max_mean_latency_delta_ms: float = 50.0
    latency_tau_ms: float = 50.0
    max_p99_ratio: float = 1.5  # challenger p99 / champion p99
    p99_slack_ms: float = 50.0  # p99 differences below this never fail (deadline: 600 ms)
    alpha: float = 0.05  # significance of "worse" (one-sided, lower CI bound)
    # user_sequential: users as the unit (delta method) and the mixture SPRT's always-valid
    # confidence sequence, so looking after every window keeps the error rates (docs/
    # experiments.md, the A/A study); per_request_fixed: the old per-request z interval
    analysis: str = "user_sequential"
    tau: float = 0.05  # the sequential test's mixing sd: the difference it is tuned to find
    # CUPED: each user's watch-through before the canary (the last pre_period_lines lines of
    # the telemetry) as a covariate of the sequential analysis; off when there is none
    cuped: bool = True
    pre_period_lines: int = 500_000
    # where non-inferiority must be shown: last_gate (before 100 %) or every_step
    non_inferiority: str = "last_gate"
    p99_min_requests: int = 100  # per variant and window before the p99 guardrail judges
    p99_windows: int = 2  # windows in a row over the p99 limit that roll back (one holds)
    max_watch_through_drop: float = 0.05  # step up only when the diff CI lower bound > -this
    min_lift: float = 0.0  # promotion at 100 % needs lift CI lower bound > this when required
    require_significant_lift: bool = False
    join_window_s: float = 7200.0  # event time after a recommendation in which a watch counts
    min_watch_minutes: int = 15  # minutes of one listed movie that make a watch-through
    target: str = "router"  # router | kserve (render the InferenceService patch)
    router_url: str = "http://127.0.0.1:8082"
    telemetry: str = "kafka"  # kafka | file
    telemetry_file: str = ""
    model_name: str = "movierec"  # registry model / InferenceService name
    promote_alias: bool = True
    kserve_mode: str = "standard"  # standard (spec.canary) | knative (canaryTrafficPercent)
    kserve_patch_dir: str = "artifacts/experiments/patches"
    max_steps_total: int = 50
    metadata_url: str = ""  # metadata API for license costs per play; empty: costs unknown
    metrics_port: int = 0  # > 0: serve the canary's /metrics (promotions, rollbacks, weights)
    # host:port of a Prometheus Pushgateway: the canary (a Job or pipeline step, often gone
    # before a scrape) pushes its metrics at the start and after every window; empty: no push
    pushgateway: str = ""
    # target=kserve on a cluster without a mesh: the router splits, following this ConfigMap
    # (its variants router_champion / router_challenger); before the challenger gets traffic,
    # challenger_deployment (its predictor) must be available
    weights_configmap: str = ""
    router_champion: str = "control"
    router_challenger: str = "canary"
    challenger_deployment: str = ""
    # after a promotion: once the champion's predictor (at this URL) serves the new version,
    # the router's weights go back to it and the challenger's predictor can go
    champion_url: str = ""
    # telemetry: weight changes apply after the newest request seen (a simulated clock);
    # effective: at the instant the driver names (telemetry on the wall clock)
    history_clock: str = "telemetry"


@dataclass
class ExperimentsConfig:
    """The experiment (``name`` is the hashing salt: renaming it reshuffles every user)."""

    name: str = "baseline"
    host: str = "127.0.0.1"
    port: int = 8082
    variants: list[VariantConfig] = field(default_factory=lambda: [VariantConfig()])
    # Pinned mode (the Helm chart runs one router Deployment per Istio subset): serve only this
    # variant, forwarding to ``model_url``; Istio's header-match/weighted routes pick the pod.
    variant: str = ""
    model_url: str = ""
    fallback_variant: str = ""  # empty: the first variant (the champion)
    upstream_timeout_s: float = 0.5
    # Kubernetes without a mesh: weights from this ConfigMap (key weights.json), polled through
    # the API by every replica (experiments/weights_source.py); empty: weights from config/admin
    weights_configmap: str = ""
    weights_poll_s: float = 2.0
    state_dir: str = "data/experiments"  # weights history, request log, reports
    request_log: bool = True
    request_log_max_bytes: int = 32 * 1024 * 1024  # rotated past this (keeps 2 old files)
    report_dir: str = "artifacts/experiments"
    # --- safe to expose (docs/security.md) ---
    # admin endpoints (/admin/*): a Bearer token from MOVIEREC_ADMIN_TOKEN or this file (a
    # mounted Secret); without one, only loopback callers are admitted
    admin_token_file: str = ""
    # hosts that POST /admin/weights may point a variant at, besides the configured upstreams
    # (no other runtime change of upstream URLs: no traffic hijack, no SSRF)
    allowed_upstream_hosts: list[str] = field(default_factory=lambda: ["127.0.0.1", "localhost"])
    rate_limit_rps: float = 0.0  # per client on /recommend (token bucket); 0: off
    rate_limit_burst: float = 20.0
    rate_limit_exempt: list[str] = field(default_factory=list)  # CIDRs of internal callers
    max_body_bytes: int = 65536  # larger request bodies: 413, not read
    max_connections: int = 256  # threads serving connections; beyond: 503 and closed
    socket_timeout_s: float = 15.0  # an idle keep-alive connection is closed after this
    header_timeout_s: float = 10.0  # a request line + headers not complete by then: closed
    istio: IstioConfig = field(default_factory=IstioConfig)
    canary: CanaryConfig = field(default_factory=CanaryConfig)


def register_configs() -> None:
    """Register the schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(group="experiments", name="schema", node=ExperimentsConfig)
