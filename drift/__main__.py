"""``python -m drift [run|online|workflow] [key=value ...]``.

* ``run`` (default): one batch drift run over the lake; with ``drift.serve_port>0`` it keeps
  running every ``drift.interval_s`` and serves ``/metrics`` on that port.
* ``online``: the online drift service for KServe payload-logger CloudEvents (port 8095).
* ``workflow``: print the Argo Workflow the retrain trigger would submit.
"""

from __future__ import annotations

import sys
import time

import yaml

from drift.config import register_configs
from movierec_core.config import asks_help, compose, split_overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    if asks_help(args):
        print(__doc__)
        return 0
    command = args[0] if args else "run"
    register_configs()
    cfg = compose("drift", overrides)
    if command == "online":
        from drift.online import serve

        serve(cfg)
        return 0
    if command == "workflow":
        from drift.retrain import render_workflow

        print(yaml.safe_dump(render_workflow(cfg.drift.retrain, ["manual"]), sort_keys=False))
        return 0
    if command != "run":
        print(f"unknown command {command!r}; use run, online or workflow", file=sys.stderr)
        return 2

    from drift.job import run_job, summary_line

    if cfg.drift.serve_port > 0:
        from prometheus_client import start_http_server

        from drift.metrics import REGISTRY

        start_http_server(cfg.drift.serve_port, addr=cfg.drift.online.host, registry=REGISTRY)
        while True:
            result = run_job(cfg)
            print(summary_line(result), flush=True)
            time.sleep(cfg.drift.interval_s)
    result = run_job(cfg)
    print(summary_line(result))
    if result.report_path is not None:
        print(f"report: {result.report_path}")
    retrain = result.report.get("retrain") if result.report else None
    if retrain is not None and not retrain.get("ok", True):
        print(f"drift: the retrain it triggered failed: {retrain.get('error', retrain)}",
              file=sys.stderr)
        return 3
    return 1 if result.run is None else 0


if __name__ == "__main__":
    sys.exit(main())
