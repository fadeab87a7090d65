"""``python -m demo``: the movierec platform end to end on embedded defaults (``make demo``).

Starts a real Kafka broker, the simulator (10,000 users) with its metadata API, the ingestor,
the trainer (first champion), model servers behind the A/B router, Prometheus and the drift
job; runs the closed loop fast-forwarded; prints and writes a report
(``.cache/demo/<run>/report.{md,json}``). Ctrl-C or the end stops everything it started.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

from demo.platform import DemoSettings, Platform, run_until_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DemoSettings()
    ap.add_argument("--users", type=int, default=d.users)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--history-minutes", type=int, default=d.history_minutes,
                    help="simulated minutes of history before the first training")
    ap.add_argument("--live-minutes", type=int, default=d.live_minutes,
                    help="simulated minutes of the closed loop")
    ap.add_argument("--live-speed", type=float, default=d.live_speed,
                    help="simulated seconds per real second in the loop (0: as fast as it goes)")
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--no-prometheus", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a small run (2,000 users, short history)")
    ap.add_argument("--target", choices=("local", "cluster"), default="local",
                    help="local: every process on this machine (default); cluster: the chart on "
                         "the local Kubernetes cluster (make cluster-demo; docs/kubernetes.md)")
    ap.add_argument("--keep", action="store_true",
                    help="cluster: leave the release installed at the end")
    args = ap.parse_args(argv)
    settings = DemoSettings(users=args.users, seed=args.seed, history_minutes=args.history_minutes,
                            live_minutes=args.live_minutes, live_speed=args.live_speed,
                            prometheus=not args.no_prometheus)
    if args.quick:
        settings.users, settings.history_minutes, settings.live_minutes = 2_000, 300, 120
    if args.run_dir is not None:
        settings.run_dir = args.run_dir
    console = Console()
    console.print(f"[bold]movierec demo[/] — run directory {settings.run_dir}")
    if args.target == "cluster":
        from demo.cluster import ClusterPlatform, attribution

        platform: Platform = ClusterPlatform(settings, console, keep=args.keep)
    else:
        platform = Platform(settings, console)
    t0 = time.monotonic()

    def stages() -> dict:
        platform.bring_up()
        platform.closed_loop()
        platform.wait_ingested()
        platform.drift()
        if args.target == "cluster":
            # attribution first: the helm test's own requests reach the model servers too
            counted = attribution(platform, platform.probes)
            platform.figures["cluster"] = {"attribution": counted,
                                           "helm_test": platform.helm_test(),
                                           "restarts": platform.restarts()}
        return platform.report()

    report = run_until_report(console, stages, platform.close)
    if report is None:
        return 130
    console.print(Markdown((platform.run_dir / "report.md").read_text()))
    console.print(f"report: {platform.run_dir / 'report.md'} (json beside it); "
                  f"{time.monotonic() - t0:.0f}s wall")
    return 0 if report["events"]["reconciled"] else 1


if __name__ == "__main__":
    sys.exit(main())
