"""The batch drift job: lake windows -> detectors -> report, metrics, retrain trigger."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from drift import metrics
from drift.config import DriftConfig
from drift.detectors import DriftRun, run_detectors, windows_for
from drift.retrain import trigger_retrain
from drift.window import Catalog, Window, latest_event_time, load_catalog, load_window

REPORT_DIR = "_drift"


@dataclass
class JobResult:
    run: DriftRun | None
    report: dict[str, Any]
    report_path: Path | None


def build_report(
    run: DriftRun, reference: Window, current: Window, created_at: datetime
) -> dict[str, Any]:
    """The JSON-serialisable drift report."""

    def window_info(w: Window) -> dict[str, Any]:
        return {
            "start": w.start.isoformat() if w.start else None,
            "end": w.end.isoformat() if w.end else None,
            "events": w.counts(),
        }

    return {
        "created_at": created_at.isoformat(),
        "drift": run.is_drift,
        "drifted_detectors": run.drifted(),
        "p_val": run.p_val,
        "correction": run.correction,
        "reference": window_info(reference),
        "current": window_info(current),
        "detectors": {name: r.to_dict() for name, r in run.detectors.items()},
    }


def write_report(lake_root: Path | str, report: dict[str, Any], created_at: datetime) -> Path:
    """``<lake_root>/_drift/<timestamp>.json``, written atomically."""
    directory = Path(lake_root) / REPORT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{created_at.strftime('%Y%m%dT%H%M%S%fZ')}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False))
    tmp.replace(path)
    return path


def detect(
    cfg: DriftConfig | DictConfig, reference: Window, current: Window, catalog: Catalog
) -> DriftRun:
    return run_detectors(
        reference, current, catalog, list(cfg.detectors), p_val=cfg.p_val,
        correction=cfg.correction, min_samples=cfg.min_samples, max_samples=cfg.max_samples,
        max_per_user=cfg.max_per_user, seed=cfg.seed,
        max_per_user_by_detector=dict(cfg.max_per_user_by_detector),
    )


def resolve_windows(cfg: DriftConfig | DictConfig, lake_root: str) -> tuple[Window, Window]:
    end = datetime.fromisoformat(cfg.current_end) if cfg.current_end else latest_event_time(
        lake_root)
    if end is None:
        raise RuntimeError(f"no watch-minute events in the lake at {lake_root}")
    if not cfg.current_end:
        end = end + timedelta(seconds=1)  # windows are half-open: keep the newest event
    (rs, re_), (cs, ce) = windows_for(end, cfg.current_hours, cfg.reference_hours)
    return load_window(lake_root, rs, re_), load_window(lake_root, cs, ce)


def run_job(
    cfg: DictConfig,
    reference: Window | None = None,
    current: Window | None = None,
    catalog: Catalog | None = None,
    echo=print,
    **retrain_hooks: Any,
) -> JobResult:
    """One drift run over ``cfg.data.lake_root`` (or the given windows); never raises on
    detector errors: they become an ``error`` report and ``movierec_drift_runs_total{error}``."""
    dcfg = cfg.drift
    lake_root = cfg.data.lake_root
    created_at = datetime.now(UTC)
    try:
        if reference is None or current is None:
            reference, current = resolve_windows(dcfg, lake_root)
        if catalog is None:
            catalog = load_catalog(lake_root)
        run = detect(dcfg, reference, current, catalog)
    except Exception as exc:
        metrics.RUNS.labels(outcome="error").inc()
        report = {"created_at": created_at.isoformat(), "error": f"{type(exc).__name__}: {exc}"}
        path = write_report(lake_root, report, created_at) if dcfg.write_report else None
        _push(dcfg, echo)
        return JobResult(None, report, path)

    report = build_report(run, reference, current, created_at)
    report["config"] = OmegaConf.to_container(dcfg, resolve=True) if isinstance(
        dcfg, DictConfig) else None
    path = write_report(lake_root, report, created_at) if dcfg.write_report else None
    metrics.RUNS.labels(outcome="drift" if run.is_drift else "no_drift").inc()
    metrics.record_run(run, time.time())

    retrain_on = [d for d in run.drifted() if d in set(dcfg.retrain.on)]
    if retrain_on and dcfg.retrain.enabled and dcfg.retrain.mode != "off":
        outcome = trigger_retrain(dcfg.retrain, retrain_on, str(path or ""), echo=echo,
                                  **retrain_hooks)
        metrics.RETRAINS.inc()
        report["retrain"] = outcome
        if path is not None:  # the report records what the trigger did
            path.write_text(json.dumps(report, indent=2, default=str))
    _push(dcfg, echo)
    return JobResult(run, report, path)


def _push(dcfg: DriftConfig | DictConfig, echo) -> None:
    if not dcfg.pushgateway:
        return
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(dcfg.pushgateway, job=dcfg.push_job, registry=metrics.REGISTRY,
                        timeout=10)
    except OSError as exc:  # the Pushgateway being down must not fail the job
        echo(f"# push to {dcfg.pushgateway} failed: {exc}")


def summary_line(result: JobResult) -> str:
    if result.run is None:
        return f"drift job failed: {result.report.get('error')}"
    parts = []
    for name, r in result.run.detectors.items():
        if r.skipped:
            parts.append(f"{name}=skipped")
        else:
            p = min((f.p_value for f in r.features.values()), default=1.0)
            parts.append(f"{name}={'DRIFT' if r.is_drift else 'ok'}(min p {p:.3g})")
    return ("DRIFT " if result.run.is_drift else "no drift ") + " ".join(parts)
