"""The simulator as one Python object: what ``python -m simulator run`` does, for orchestrators.

::

    from simulator.runner import Simulator, watch_through_by_server
    sim = Simulator.from_overrides(["world.n_users=10000", "seed=7"])
    api = sim.start_metadata_api(port=8080)             # handle: .url, .stop()
    oracle = sim.start_endpoint("oracle", port=8099)     # knows what each user watched
    sim.use_arms([("url", 0.8, "http://127.0.0.1:8082"), ("oracle", 0.1), ("popularity", 0.1)])
    sink = KafkaSink("127.0.0.1:9092", "movielog")      # or FileSink / MemorySink
    ledger = sim.run(minutes=120, sink=sink, speed=600)  # blocking; or sim.start(...) / sim.stop()
    sim.close()

Watch-through per server (arm) from the logged lines: :func:`watch_through_by_server`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from movierec_core.events import Rejection, parse
from movierec_core.watch_through import (
    DEFAULT_MIN_MINUTES,
    DEFAULT_WINDOW_MINUTES,
    frames_from_events,
    watch_through,
)
from simulator import endpoints, metadata_api
from simulator.behaviour import Simulation, Sink
from simulator.config import SimulatorConfig
from simulator.ledger import Ledger
from simulator.recommenders import HttpRecommender, Recommender, SplitRecommender, builtin
from simulator.serving import ServerHandle
from simulator.world import World


class Simulator:
    def __init__(self, cfg: Any, world: World | None = None) -> None:
        self.cfg = cfg
        self.world = world if world is not None else World.build(cfg.world)
        self.simulation = Simulation(self.world, cfg)
        self.handles: list[ServerHandle] = []
        self._http: list[HttpRecommender] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    @classmethod
    def from_overrides(cls, overrides: Sequence[str] = ()) -> Simulator:
        """Defaults of :class:`SimulatorConfig` with dotted overrides (``clock.speed=600``)."""
        cfg = OmegaConf.structured(SimulatorConfig)
        cfg.merge_with_dotlist(list(overrides))
        return cls(cfg)

    @property
    def ledger(self) -> Ledger:
        return self.simulation.ledger

    # ------------------------------------------------------------------ services
    def start_metadata_api(self, host: str = "127.0.0.1", port: int | None = None,
                           **options: Any) -> ServerHandle:
        api = self.cfg.api
        handle = metadata_api.serve(
            self.world, host, api.port if port is None else port,
            rate_limit_per_s=options.get("rate_limit_per_s", api.rate_limit_per_s),
            error_rate=options.get("error_rate", api.error_rate),
            string_number_share=api.string_number_share,
            missing_field_share=api.missing_field_share)
        self.handles.append(handle)
        return handle

    def start_endpoint(self, kind: str = "oracle", host: str = "127.0.0.1",
                       port: int = 0, k: int = 20) -> ServerHandle:
        handle = endpoints.serve(self.world, kind, host, port, k,
                                 seen=self.simulation.seen_ids, seed=int(self.cfg.seed))
        self.handles.append(handle)
        return handle

    # ------------------------------------------------------------------ who answers
    def recommender(self, target: str, url: str = "", weight_name: str = "") -> Recommender:
        rc = self.cfg.recommend
        if target == "url":
            http = HttpRecommender(url or rc.url, int(rc.timeout_ms), int(rc.concurrency),
                                   server=rc.server_name)
            self._http.append(http)
            return http
        return builtin(target, self.world, int(self.cfg.behaviour.k),
                       self.simulation.seen_in_thread, int(self.cfg.seed))

    def advance_to(self, when: datetime) -> None:
        """Let the simulated clock jump forward to ``when`` (naive UTC) for the next minute: a
        quiet gap, nothing happens in between. Run at ``speed=1`` (real time) afterwards and the
        simulated time is the wall clock, so telemetry and the platform's own clocks agree (a canary on
        a cluster decides by real time)."""
        current = self.simulation.start + timedelta(minutes=self.simulation.tick)
        if when < current:
            raise ValueError(f"the simulated clock only moves forward: {when} < {current}")
        self.simulation.start = when - timedelta(minutes=self.simulation.tick)

    def use(self, target: str, url: str = "") -> None:
        """One target for everyone: ``url`` (HTTP) or built-in oracle | popularity | random."""
        self.simulation.recommender = self.recommender(target, url)

    def use_arms(self, arms: Iterable[tuple]) -> None:
        """Users split by id hash into arms ``(target, weight[, url])``; lines name each arm."""
        built = [(float(a[1]), self.recommender(a[0], a[2] if len(a) > 2 else "")) for a in arms]
        self.simulation.recommender = SplitRecommender(built, seed=int(self.cfg.seed))

    def configure_from_cfg(self) -> None:
        rc = self.cfg.recommend
        arms = list(rc.get("arms", []) or [])
        if arms:
            self.use_arms([_parse_arm(a) for a in arms])
        else:
            self.use(str(rc.target), str(rc.url))

    # ------------------------------------------------------------------ running
    def run(self, minutes: int, sink: Sink, speed: float = 0.0, on_tick=None) -> Ledger:
        return self.simulation.run(minutes, sink, speed, self._stop, on_tick)

    def start(self, minutes: int, sink: Sink, speed: float = 0.0, on_tick=None) -> None:
        """Run in a background thread; :meth:`stop` ends it early, :meth:`join` waits."""
        self._stop.clear()

        def target() -> None:
            try:
                self.run(minutes, sink, speed, on_tick)
            except BaseException as exc:  # surfaced by join()
                self.error = exc

        self._thread = threading.Thread(target=target, name="simulation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self, timeout: float | None = None) -> Ledger:
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.ledger

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for handle in self.handles:
            handle.stop()
        for http in self._http:
            http.close()
        self.handles.clear()


def _parse_arm(spec: str) -> tuple:
    """``"oracle:0.2"`` or ``"url:0.6:http://127.0.0.1:8082"`` → (target, weight[, url])."""
    target, _, rest = str(spec).partition(":")
    weight, _, url = rest.partition(":")
    return (target, float(weight or 1.0), url) if url else (target, float(weight or 1.0))


def watch_through_by_server(lines: Iterable[bytes | str],
                            min_minutes: int = DEFAULT_MIN_MINUTES,
                            window_minutes: float = DEFAULT_WINDOW_MINUTES) -> pd.DataFrame:
    """Watch-through per logged server name, from raw lines (duplicates dropped first)."""
    unique = dict.fromkeys(lines)
    events = (e for e in map(parse, unique) if not isinstance(e, Rejection))
    requests, watches = frames_from_events(events)
    if requests.empty:
        return pd.DataFrame(columns=["requests", "watched_through", "watch_through"])
    return watch_through(requests, watches, min_minutes, window_minutes, by="server")
