"""A real Prometheus (Debian ``/usr/bin/prometheus``) for the local demo, and a summary of it.

The demo orchestrator calls::

    from devstack.prometheus import start_prometheus, summary, format_summary
    prom = start_prometheus("monitoring/prometheus-demo.yml", data_dir=".cache/prometheus")
    ...                                   # run the platform; Prometheus scrapes it every 5 s
    print(format_summary(summary(prom.url)))
    prom.stop()

``render_config`` writes a config for other ports (tests, several demo instances); the demo
config loads ``monitoring/alerts.yaml`` so the summary lists the alerts that fire.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from devstack.ports import free_port  # a local-demo helper: devstack is on the path here

DEFAULT_BINARY = "/usr/bin/prometheus"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "monitoring" / "prometheus-demo.yml"
ALERTS = REPO_ROOT / "monitoring" / "alerts.yaml"

# name -> PromQL: the figures printed at the end of the demo.
SUMMARY_QUERIES: dict[str, str] = {
    "targets_up": "sum(up)",
    "targets_total": "count(up)",
    "router_requests": "sum(movierec_router_requests_total)",
    "router_p99_seconds": "histogram_quantile(0.99, sum by (le) "
                          "(rate(movierec_router_request_duration_seconds_bucket[5m])))",
    "router_error_share": 'sum(movierec_router_requests_total{status!~"2..|4.."}) '
                          "/ sum(movierec_router_requests_total)",
    "model_server_requests": "sum(movierec_model_server_requests_total)",
    "model_server_fallbacks": "sum(movierec_model_server_fallbacks_total)",
    "models_in_service": "count(movierec_model_server_model_info == 1)",
    "ingested_events": 'sum(movierec_ingestor_events_total{outcome="accepted"})',
    "dead_lettered": "sum(movierec_ingestor_dlq_total)",
    "consumer_lag": "sum(movierec_ingestor_consumer_lag)",
    "canary_promotions": "sum(movierec_canary_promotions_total)",
    "canary_rollbacks": "sum(movierec_canary_rollbacks_total)",
    "drift_detectors_raised": "sum(movierec_drift_detected)",
    "drift_retrains_triggered": "sum(movierec_drift_retrains_triggered_total)",
    "trainer_runs": "sum(movierec_trainer_runs_total)",
}


@dataclass
class LocalPrometheus:
    """A running Prometheus process."""

    port: int
    config: Path
    data_dir: Path
    process: subprocess.Popen
    log_path: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = 20.0) -> None:
        stop_prometheus(self, timeout_s)

    def __enter__(self) -> LocalPrometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def render_config(
    path: Path | str,
    targets: dict[str, list[str]],
    rule_files: list[str] | None = None,
    scrape_interval: str = "5s",
    honor_labels_jobs: tuple[str, ...] = ("pushgateway",),
) -> Path:
    """Write a Prometheus config scraping ``targets`` (job -> ["127.0.0.1:port", ...])."""
    cfg: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(Path(r).resolve()) for r in (rule_files or [])],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addrs)}],
             **({"honor_labels": True} if job in honor_labels_jobs else {})}
            for job, addrs in targets.items()
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start_prometheus(
    config: Path | str = DEMO_CONFIG,
    data_dir: Path | str = ".cache/prometheus",
    port: int = 0,
    binary: str = DEFAULT_BINARY,
    timeout_s: float = 60.0,
    retention: str = "1d",
) -> LocalPrometheus:
    """Start Prometheus on 127.0.0.1:``port`` (0: a free one) and wait until it is ready."""
    exe = binary if Path(binary).exists() else shutil.which("prometheus")
    if not exe:
        raise FileNotFoundError(f"{binary} not found: `make apt-deps` installs prometheus")
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir / "prometheus.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [exe, f"--config.file={Path(config).resolve()}", f"--storage.tsdb.path={data_dir}",
         f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.retention.time={retention}",
         "--web.enable-lifecycle"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    log.close()
    prom = LocalPrometheus(port, Path(config), data_dir, process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n"
                               f"{log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{prom.url}/-/ready", timeout=1.0).status_code == 200:
                return prom
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_prometheus(prom)
    raise TimeoutError(f"prometheus not ready on {prom.url} after {timeout_s} s")


def stop_prometheus(prom: LocalPrometheus, timeout_s: float = 20.0) -> None:
    """Stop the process (SIGTERM, then SIGKILL); idempotent."""
    if prom.process.poll() is None:
        prom.process.terminate()
        try:
            prom.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            prom.process.kill()
            prom.process.wait(timeout=timeout_s)


def query(url: str, promql: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Instant query: the ``result`` list of ``/api/v1/query``."""
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=timeout_s)
    r.raise_for_status()
    body = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed: {body}")
    return body["data"]["result"]


def scalar(url: str, promql: str) -> float | None:
    """The single value of an aggregating query (None: no data)."""
    result = query(url, promql)
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if value != value else value  # NaN (e.g. 0/0) -> None


def wait_for_targets(url: str, n: int, timeout_s: float = 30.0) -> bool:
    """Wait until at least ``n`` targets have been scraped successfully."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        up = scalar(url, "sum(up)")
        if up is not None and up >= n:
            return True
        time.sleep(0.5)
    return False


def summary(url: str) -> dict[str, Any]:
    """Key figures (``SUMMARY_QUERIES``), firing alerts and the targets that are down."""
    out: dict[str, Any] = {name: scalar(url, q) for name, q in SUMMARY_QUERIES.items()}
    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    out["alerts_firing"] = sorted({a["labels"]["alertname"] for a in alerts
                                   if a.get("state") == "firing"})
    down = query(url, "up == 0")
    out["targets_down"] = sorted(f"{r['metric'].get('job')}@{r['metric'].get('instance')}"
                                 for r in down)
    return out


def format_summary(figures: dict[str, Any]) -> str:
    """A short human summary for the end of the demo."""
    lines = ["Prometheus summary"]
    for name, value in figures.items():
        if isinstance(value, list):
            text = ", ".join(value) if value else "none"
        elif value is None:
            text = "no data"
        elif name.endswith("_seconds"):
            text = f"{value * 1000:.1f} ms"
        elif name.endswith("_share"):
            text = f"{value:.3%}"
        else:
            text = f"{value:,.0f}"
        lines.append(f"  {name:<26} {text}")
    return "\n".join(lines)
