"""``python -m experiments <command> [key=value ...]``

* ``router``: serve ``/recommend/<uid>`` for the configured experiment (``experiments.*``).
* ``canary``: run a canary rollout of ``experiments.canary.challenger`` against the champion.
* ``report <experiment>``: markdown + HTML report of a finished (or running) canary.
* ``render-istio``: print the VirtualService and DestinationRule (validated) as YAML.
* ``assign <user_id>...``: print each user's bucket and variant under the configured weights.
* ``aa-study [--experiments N] [--users N] [--looks N] [--power]``: false positives and
  coverage of the old per-request analysis and of the user-level sequential one under
  peeking, on simulated A/A experiments (``experiments.aa_study``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from experiments.config import register_configs
from movierec_core.config import asks_help, compose, split_overrides, write_resolved
from movierec_core.pseudonym import KeyRing


def _canary(cfg) -> int:
    from experiments.canary import (
        CanaryController,
        KafkaTelemetry,
        KServePatchDriver,
        LinesFileTelemetry,
        MovieCosts,
        Policy,
        RouterDriver,
    )
    from experiments.report import write_report

    e, c = cfg.experiments, cfg.experiments.canary
    out_dir = Path(e.report_dir) / e.name
    if c.promote_alias:
        from movierec_core.registry import open_registry

        registry = open_registry(cfg.data.registry_root)
        champion_v = registry.get_alias(c.model_name, c.champion)
        challenger_v = registry.get_alias(c.model_name, c.challenger)
        if challenger_v is None or challenger_v == champion_v:
            # the first model registered is champion at once: there is nothing to compare
            print(json.dumps({"experiment": e.name, "outcome": "nothing_to_roll_out",
                              "champion": champion_v, "challenger": challenger_v}))
            return 0
    write_resolved(cfg, out_dir, "canary-config.yaml")
    route = None
    if c.target == "router":
        driver = RouterDriver(c.router_url, c.champion, c.challenger, list(c.challenger_urls))
    elif c.target == "kserve":
        # KServe v0.20: the webhook refuses model.name on the stable predictor, the CRD requires
        # it on a canary's, which also needs a predictor name (the pipeline's canary step swaps
        # in the chart's full predictor)
        predictor = {"name": "canary", "model": {"name": "kserve-container",
                                                 "modelFormat": {"name": "movierec"},
                                                 "args": [f"serving.alias={c.challenger}"]}}
        base = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": c.model_name},
                "spec": {"predictor": {"model": {"modelFormat": {"name": "movierec"}}}}}
        driver = KServePatchDriver(base, c.kserve_mode, predictor, c.kserve_patch_dir)
        if c.weights_configmap:
            from experiments.canary import CompositeDriver, RouterConfigMapDriver
            from experiments.weights_source import InClusterAPI

            api = InClusterAPI()
            ready = ((lambda: api.deployment_available(str(c.challenger_deployment)))
                     if c.challenger_deployment else None)
            route = RouterConfigMapDriver(api, str(c.weights_configmap), str(c.router_champion),
                                          str(c.router_challenger), ready=ready)
            driver = CompositeDriver(driver, route)
    else:
        raise SystemExit(f"experiments.canary.target must be router or kserve, not {c.target}")
    if c.telemetry == "file":
        telemetry = LinesFileTelemetry(c.telemetry_file)
    else:
        from movierec_core.kafka_security import kafka_python_options

        telemetry = KafkaTelemetry(cfg.kafka.bootstrap, cfg.kafka.topic,
                                   security=kafka_python_options(cfg.kafka))

    promote = None
    from movierec_core.pushed_metrics import push_champion_moved

    if c.promote_alias:
        def promote() -> None:
            from movierec_core.registry import open_registry

            version = open_registry(cfg.data.registry_root).promote(c.model_name)
            logging.getLogger("experiments.canary").info("registry: champion -> %s", version)
            push_champion_moved(str(c.pushgateway), c.model_name, version)
            if route is not None:
                # the challenger serves everyone now; back to the champion's predictor once it
                # has hot-swapped to the promoted version (its alias poll), before the
                # challenger's predictor is removed
                wait_for_version(str(c.champion_url), version)
                driver.wait_until(route.set_weight(0))

    from experiments.metrics import ExperimentMetrics

    metrics = ExperimentMetrics()
    publish = None
    if c.pushgateway:
        from movierec_core.pushed_metrics import push

        def publish() -> None:
            push(str(c.pushgateway), "movierec_canary", metrics.registry)
    if c.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(int(c.metrics_port), addr="127.0.0.1", registry=metrics.registry)
    controller = CanaryController(
        e.name, Policy.from_config(c), driver, telemetry, champion=c.champion,
        challenger=c.challenger, join_window_s=c.join_window_s, promote=promote,
        window_s=c.window_s, state_path=out_dir / "canary.json", max_windows=c.max_steps_total,
        min_watch_minutes=c.min_watch_minutes, metrics=metrics, publish=publish,
        history_clock=str(c.history_clock), pre_period_lines=int(c.pre_period_lines),
        costs=MovieCosts(c.metadata_url) if c.metadata_url else None,
        pseudonyms=KeyRing.from_config(cfg.data).current,
    )
    try:
        result = controller.run()
    finally:
        close = getattr(telemetry, "close", None)
        if close is not None:
            close()
    write_report(out_dir / "canary.json", out_dir)
    print(json.dumps({"experiment": e.name, "outcome": result.outcome,
                      "final_percent": result.final_percent, "windows": len(result.windows),
                      "report": str(out_dir / "report.md")}))
    return 0 if result.outcome in ("promoted", "rolled_back") else 1


def wait_for_version(url: str, version: str, timeout_s: float = 300.0) -> None:
    """Until ``url``'s /recommend answers with ``X-Model-Version: version``."""
    import time

    import httpx

    log = logging.getLogger("experiments.canary")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{url.rstrip('/')}/recommend/0", timeout=5)
            if resp.headers.get("x-model-version") == version:
                log.info("%s serves %s", url, version)
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise RuntimeError(f"{url} did not serve {version} within {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw and raw[0] == "aa-study":  # argparse options of its own
        from experiments import aa_study

        return aa_study.main(raw[1:])
    args, overrides = split_overrides(raw)
    if asks_help(args):
        print(__doc__)
        return 0
    if not args:
        print(__doc__)
        return 2
    command, rest = args[0], args[1:]
    register_configs()
    if command == "report" and rest:
        overrides = [f"experiments.name={rest[0]}", *overrides]
    cfg = compose("experiments", overrides)
    if command == "router":
        from experiments.router import serve

        serve(cfg.experiments, KeyRing.from_config(cfg.data).current)
        return 0
    if command == "canary":
        return _canary(cfg)
    if command == "report":
        from experiments.report import write_report

        out_dir = Path(cfg.experiments.report_dir) / cfg.experiments.name
        paths = write_report(out_dir / "canary.json", out_dir)
        print("\n".join(str(p) for p in paths))
        return 0
    if command == "render-istio":
        from experiments import k8s

        objs = k8s.render_istio(cfg.experiments)
        for obj in objs:
            k8s.validate_istio(obj)
        print(k8s.dump_yaml(objs), end="")
        return 0
    if command == "assign":
        from experiments.assignment import Allocation, bucket

        e = cfg.experiments
        alloc = Allocation.from_weights([(v.name, v.weight) for v in e.variants])
        pseudonyms = KeyRing.from_config(cfg.data).current
        for uid in rest:
            unit = pseudonyms.pid(int(uid)) if pseudonyms is not None else int(uid)
            print(json.dumps({"experiment": e.name, "user_id": int(uid),
                              "bucket": bucket(e.name, unit),
                              "variant": alloc.variant_of(e.name, unit)}))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
