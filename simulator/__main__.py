"""``python -m simulator [run|api|endpoint|stream] key=value...``

* ``run`` (default): the world's users on the simulated clock, calling ``recommend.url`` (or a
  built-in target / arms), into the configured sink (Kafka by default), with the metadata API
  up (``api.enabled``); writes the ledger to ``ledger_path`` and prints events/s.
* ``api``: only the metadata API (``api.port``, default 8080).
* ``endpoint``: a built-in ``/recommend`` endpoint: ``endpoint kind=oracle port=8099``.
* ``stream``: as fast as possible into a file (``sink.path``), popularity lists in-process.

Overrides without a known group prefix are simulator keys: ``clock.speed=600`` means
``simulator.clock.speed=600``; ``kafka.bootstrap=...`` stays as it is.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from movierec_core.config import asks_help, compose, split_overrides, write_resolved
from simulator import config as _config  # noqa: F401  (registers the schema)
from simulator.runner import Simulator
from simulator.sinks import make_sink
from simulator.world import World

_GROUPS = {"kafka", "metadata_api", "data", "simulator", "hydra"}
_ENDPOINT_KEYS = {"kind", "port", "host", "k"}


def qualify(override: str, command: str) -> str:
    prefix = override[: len(override) - len(override.lstrip("+~"))]
    body = override[len(prefix):]
    key = body.split("=", 1)[0]
    if key.split(".", 1)[0] in _GROUPS:
        return override
    if command == "endpoint" and key in _ENDPOINT_KEYS:
        return f"{prefix}simulator.endpoint.{body}"
    if command == "api" and key in {"port", "host"}:
        return f"{prefix}simulator.api.{body}"
    return f"{prefix}simulator.{body}"


def _stream_defaults(overrides: list[str]) -> list[str]:
    given = {o.split("=", 1)[0] for o in overrides}
    defaults = {"simulator.sink.kind": "file", "simulator.clock.speed": "0",
                "simulator.recommend.target": "popularity", "simulator.api.enabled": "false"}
    return [f"{k}={v}" for k, v in defaults.items() if k not in given] + overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    if asks_help(args):
        print(__doc__)
        return 0
    command = args[0] if args else "run"
    if command not in {"run", "api", "endpoint", "stream"}:
        print(__doc__)
        return 2
    overrides = [qualify(o, command) for o in overrides]
    if command == "stream":
        overrides = _stream_defaults(overrides)
    cfg = compose("simulator", overrides)
    sim_cfg = cfg.simulator

    if command == "api":
        world = World.build(sim_cfg.world)
        from simulator import metadata_api

        api = sim_cfg.api
        handle = metadata_api.serve(world, api.host, api.port,
                                    rate_limit_per_s=api.rate_limit_per_s,
                                    error_rate=api.error_rate,
                                    string_number_share=api.string_number_share,
                                    missing_field_share=api.missing_field_share)
        print(f"metadata API on {handle.url} ({world.n_users} users, {world.n_movies} movies)",
              flush=True)
        handle.wait()
        return 0

    if command == "endpoint":
        world = World.build(sim_cfg.world)
        from simulator import endpoints

        ep = sim_cfg.endpoint
        handle = endpoints.serve(world, ep.kind, ep.host, ep.port, ep.k, seed=sim_cfg.seed)
        print(f"{ep.kind} /recommend endpoint on {handle.url}", flush=True)
        handle.wait()
        return 0

    return _run(cfg)


def _run(cfg) -> int:
    sim_cfg = cfg.simulator
    started = time.monotonic()
    simulator = Simulator(sim_cfg)
    print(f"world: {simulator.world.n_users} users, {simulator.world.n_movies} movies "
          f"({time.monotonic() - started:.1f} s)", flush=True)
    if sim_cfg.api.enabled:
        handle = simulator.start_metadata_api(sim_cfg.api.host, sim_cfg.api.port)
        print(f"metadata API on {handle.url}", flush=True)
    if sim_cfg.endpoint.enabled:
        ep = sim_cfg.endpoint
        handle = simulator.start_endpoint(ep.kind, ep.host, ep.port, ep.k)
        print(f"{ep.kind} /recommend endpoint on {handle.url}", flush=True)
    if sim_cfg.recommend.target == "endpoint":  # the endpoint served above, over HTTP
        if not sim_cfg.endpoint.enabled:
            raise SystemExit("recommend.target=endpoint needs endpoint.enabled=true")
        simulator.use("url", handle.url)
    else:
        simulator.configure_from_cfg()
    sink = make_sink(sim_cfg.sink, cfg.kafka)
    where = (f"kafka {cfg.kafka.bootstrap}/{cfg.kafka.topic}" if sim_cfg.sink.kind == "kafka"
             else str(sim_cfg.sink.path) if sim_cfg.sink.kind == "file" else sim_cfg.sink.kind)
    print(f"simulating {sim_cfg.duration_minutes or 'unbounded'} minutes at speed "
          f"{sim_cfg.clock.speed or 'max'} into {where}", flush=True)

    def on_term(signum, frame):  # a clean stop: flush, write the ledger
        simulator._stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    progress = {"last": time.monotonic(), "lines": 0, "total": 0}
    run_started = time.monotonic()

    def on_tick(sim, n_lines: int) -> None:
        progress["lines"] += n_lines
        progress["total"] += n_lines
        now = time.monotonic()
        if now - progress["last"] >= 5:
            rate = progress["lines"] / (now - progress["last"])
            print(f"{sim.ledger.last_time}  lines {progress['total']:,}  {rate:,.0f} events/s",
                  flush=True)
            progress.update(last=now, lines=0)

    try:
        ledger = simulator.run(int(sim_cfg.duration_minutes), sink, float(sim_cfg.clock.speed),
                               on_tick)
    finally:
        sink.close()
        simulator.close()
    elapsed = time.monotonic() - run_started
    path = ledger.save(sim_cfg.ledger_path)
    write_resolved(cfg, Path(path).parent, "simulator-config.yaml")
    summary = {"events_per_s": round(ledger.lines_total / max(elapsed, 1e-9)),
               "elapsed_s": round(elapsed, 2), "ledger": str(path), **ledger.to_dict()}
    print(json.dumps(summary, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
