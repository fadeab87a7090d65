"""The simulator's config schema (group ``simulator``, name ``schema``) and its registration."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from simulator.world import WorldConfig


@dataclass
class ClockConfig:
    """Simulated time: one tick is one simulated minute (one watch line per watching user)."""

    start: str = "2025-03-02T00:00:00"
    speed: float = 60.0  # simulated seconds per real second; 0: as fast as possible


@dataclass
class BehaviourConfig:
    """How users behave; the knobs that make the logged events learnable."""

    session_rate_per_hour: float = 1.5  # an idle user starts a session at this rate
    continue_prob: float = 0.6  # after a movie, pick another in the same session
    request_prob: float = 0.7  # a pick is preceded by a recommendation request
    k: int = 20  # list length asked for
    attention: float = 0.9  # chance the first list entry is considered
    position_decay: float = 0.85  # attention falls by this factor per position
    pick_gamma: float = 1.0  # attraction of a listed movie = attention * affinity ** gamma
    organic_candidates: int = 64  # organic choice: sampled by popularity, weighted by affinity
    organic_gamma: float = 2.0
    rewatch_factor: float = 0.05  # a movie already watched is this much less attractive
    watch_mean_factor: float = 2.5  # minutes watched ~ Exp(mean = runtime * affinity * this)
    rating_prob: float = 0.25  # after a watch, the user rates it
    rating_scale_max: int = 5  # 1-5 default, 1-10 in some deployments
    rating_noise: float = 0.12
    signups_per_hour: float = 60.0
    fractional_time_share: float = 0.3  # share of users whose timestamps carry fractions
    warm_start_share: float = 0.3  # users already mid-movie at minute 0 (steady state at once)


@dataclass
class FaultConfig:
    """Injected invalid lines (EVENTS.md kinds, movierec_core.invalid) and duplicate deliveries."""

    invalid_rate: float = 0.0  # invalid lines per valid line
    duplicate_rate: float = 0.0  # share of valid lines delivered twice
    kinds: list[str] = field(default_factory=list)  # empty: every InvalidKind
    huge_line_bytes: int = 200_000  # huge lines are cut to this (still > parser limit)


@dataclass
class RecommendConfig:
    """Where the simulated service asks for recommendations."""

    # url | oracle | popularity | random (in-process, no HTTP) | endpoint (the built-in
    # endpoint this process serves, over HTTP; needs endpoint.enabled)
    target: str = "url"
    url: str = "http://127.0.0.1:8082"
    timeout_ms: int = 600
    concurrency: int = 8
    server_name: str = ""  # as logged; empty: host:port of url (or the target's name)
    # Non-empty: users split by id hash into arms "target:weight[:url]", e.g.
    # ["url:0.8:http://127.0.0.1:8082", "oracle:0.1", "popularity:0.1"]; lines name each arm.
    arms: list[str] = field(default_factory=list)


@dataclass
class SinkConfig:
    kind: str = "kafka"  # kafka | file | none
    path: str = "data/simulator/movielog.txt"
    max_lines_per_s: float = 0.0  # 0: unlimited
    linger_ms: int = 20
    batch_size: int = 1_048_576
    max_request_size: int = 4_194_304


@dataclass
class ApiConfig:
    """The metadata API (EVENTS.md); ``run`` starts it in-process when enabled."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    rate_limit_per_s: float = 0.0  # 0: no limit; else HTTP 429 beyond it
    error_rate: float = 0.0  # share of requests answered 500 (drills); POST /admin/faults
    string_number_share: float = 0.3  # numbers served as strings
    missing_field_share: float = 0.05  # optional fields left out or null


@dataclass
class EndpointConfig:
    """A built-in /recommend endpoint (oracle, popularity or random)."""

    kind: str = "oracle"
    host: str = "127.0.0.1"
    port: int = 8099
    k: int = 20
    enabled: bool = False  # run: serve it from the same process (it then knows what was seen)


@dataclass
class DriftConfig:
    """A scheduled drift at simulated minute ``at_minute`` (-1: none)."""

    at_minute: int = -1
    kinds: list[str] = field(default_factory=lambda: ["taste_shift", "new_releases",
                                                     "signup_shift"])
    taste_shift_share: float = 0.3  # of users whose tastes rotate
    taste_shift_strength: float = 0.8  # 0: none, 1: a new random taste
    new_releases: int = 200
    new_release_popularity: float = 3.0  # relative to the most popular movie
    signup_age_shift: float = -12.0
    signup_female_share: float = 0.7
    signup_rate_factor: float = 3.0


@dataclass
class SimulatorConfig:
    seed: int = 7
    duration_minutes: int = 60  # simulated minutes for `run`; 0: until stopped
    ledger_path: str = "data/simulator/ledger.json"
    world: WorldConfig = field(default_factory=WorldConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)


def register_configs() -> None:
    ConfigStore.instance().store(group="simulator", name="schema", node=SimulatorConfig)


register_configs()
