"""``make cluster-test``: Argo's pipeline and canary rollouts on the local cluster, end to end.

With the cluster, the images, KServe and Argo up (the make target brings them up), this:

1. installs the chart (``ci/local-values.yaml``: pipeline, Pushgateway, in-release Prometheus)
   and lands a history of popularity lists from the simulator on the host;
2. registers a first champion (popularity, a Job) and starts the closed loop **on the wall
   clock**: the simulated service calls ``/recommend`` through the router's NodePort at real
   time, so the canary decides on minutes of real traffic;
3. submits the chart's WorkflowTemplate (``argo submit --from workflowtemplate/...``): snapshot →
   train → evaluate → quality gate → register → canary 5 → 25 → 50 → 100 % → promotion, then
   checks that the InferenceService serves the new champion and that no request failed;
4. submits a run whose quality gate fails (it must stop before registering, and say why);
5. registers a deliberately bad challenger (the champion's factors replaced by noise) and runs
   the template's canary step on it: it must be rolled back within two analysis windows;
6. makes the CronWorkflow fire on a one-minute schedule and shows the mutex holds a second run;
7. checks the alerts the platform could not fire before (no new champion for 48 h, canary
   rolled back) fire once, takes a screenshot of the pipeline's DAG in the Argo UI, and writes
   ``bench/results/cluster.json`` (stage durations, pods, restarts, failed requests, weights
   over time, workflow phases, alerts).

Needs root (the cluster); ``--keep`` leaves the release installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from cluster.argo import SERVER_NODEPORT
from cluster.layout import BIN, NET, PATHS, ROOT
from demo.cluster import (
    NAMESPACE,
    PROMETHEUS_NODEPORT,
    ClusterPlatform,
    host_values,
    kubectl,
)
from demo.platform import DemoSettings

TEMPLATE = "movierec-retrain"
WEIGHTS_CONFIGMAP = "movierec-router-weights"
ISVC = "movierec-model"
PROMETHEUS = f"http://{NET.node_ip}:{PROMETHEUS_NODEPORT}"
ARGO_UI = f"http://{NET.node_ip}:{SERVER_NODEPORT}"
SCREENSHOT = ROOT / "docs" / "argo-pipeline-dag.png"
RESULTS_PATH = ROOT / "bench" / "results" / "cluster.json"

# canary settings for real time: minutes of traffic per window, a watch counts within the
# join window when it lasts min_watch_minutes
# Real-time analysis windows. With 60,000 simulated users and 90 % of them calling the router
# (~115 /recommend a minute), a 4-minute window holds ~20 challenger requests at 5 %: enough for
# the floor below, and a noise model's watch-through (~0.2 against ~0.8) is then decided in
# the first window. Joins: a pick is watched from the next minute; 2 minutes within 150 s.
CANARY = {"windowSeconds": 240, "joinWindowSeconds": 150, "minWatchMinutes": 2,
          "minRequests": 15, "steps": [5, 25, 50, 100]}
ROUTER_SHARE = 0.9  # the rest: the oracle and popularity arms

# a noise-factor copy of the champion, registered as challenger (run in the trainer image)
BAD_CHALLENGER = """
import shutil, sys, numpy as np
from movierec_core.registry import FileRegistry
reg = FileRegistry("/data/registry")
src = reg.resolve("movierec", "champion")
dst = "/data/pipeline/bad-challenger"
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src, dst)
rng = np.random.default_rng(0)
import pathlib
# whatever the champion is (ALS factors, EASE's item-item weights, ...): every float array of
# its model replaced by noise of the same shape, so it ranks at random
for path in sorted(pathlib.Path(dst, "model").glob("*.npy")):
    array = np.load(path, mmap_mode="r")
    if array.dtype.kind == "f":
        np.save(path, rng.standard_normal(array.shape).astype(array.dtype))
version = reg.register("movierec", dst, aliases=("challenger",))
print(version)
"""


def argo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([str(BIN / "argo"), "--kubeconfig", str(PATHS.admin_kubeconfig),
                          "-n", NAMESPACE, *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"argo {' '.join(args[:3])}: {(res.stderr or res.stdout)[-2000:]}")
    return res


def prometheus(query: str) -> list[dict[str, Any]]:
    try:
        resp = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": query}, timeout=10)
        return resp.json()["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return []


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Watcher:
    """Samples, every few seconds: the router's weights ConfigMap, the InferenceService's canary
    share, the router's weights as Prometheus has them, and the alerts firing."""

    def __init__(self) -> None:
        self.weights: list[dict[str, Any]] = []
        self.isvc: list[dict[str, Any]] = []
        self.prometheus_weights: list[dict[str, Any]] = []
        self.alerts: dict[str, str] = {}  # alert -> first time seen firing
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-test-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(5):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a missed sample is not a failed test
                pass

    def sample(self) -> None:
        at = now_utc().isoformat(timespec="seconds")
        cm = kubectl("get", "configmap", WEIGHTS_CONFIGMAP, "-o", "json", check=False)
        if cm.returncode == 0:
            payload = json.loads(json.loads(cm.stdout)["data"]["weights.json"])
            if not self.weights or self.weights[-1]["weights"] != payload["weights"]:
                self.weights.append({"seen_at": at, **payload})
        isvc = kubectl("get", "isvc", ISVC, "-o", "json", check=False)
        if isvc.returncode == 0:
            canary = json.loads(isvc.stdout)["spec"].get("canary") or []
            pct = int(canary[0]["trafficPercent"]) if canary else 0
            if not self.isvc or self.isvc[-1]["canary_percent"] != pct:
                self.isvc.append({"seen_at": at, "canary_percent": pct})
        series = {r["metric"].get("variant", "?"): float(r["value"][1])
                  for r in prometheus("max by (variant) (movierec_router_variant_weight)")}
        if series and (not self.prometheus_weights
                       or self.prometheus_weights[-1]["weights"] != series):
            self.prometheus_weights.append({"seen_at": at, "weights": series})
        for alert in prometheus("ALERTS{alertstate=\"firing\"}"):
            self.alerts.setdefault(alert["metric"]["alertname"], at)


class ClusterTest:
    def __init__(self, settings: DemoSettings, console: Console, keep: bool) -> None:
        self.console = console
        self.p = ClusterPlatform(settings, console, keep=keep)
        # no A/B: the champion alone until the pipeline's canary step adds a challenger
        self.p.values = {**host_values(), "pipeline": {"canary": CANARY}}
        self.watcher = Watcher()
        self.stages: dict[str, float] = {}
        self.results: dict[str, Any] = {"workflows": {}}
        self.live_from: datetime | None = None

    @contextmanager
    def stage(self, name: str):
        self.p.status.stage(name)
        t0 = time.monotonic()
        yield
        self.stages[name] = round(time.monotonic() - t0, 1)
        self.console.print(f"   {name}: {self.stages[name]:.0f} s")

    # ----------------------------------------------------------------- the platform
    def bring_up(self) -> None:
        with self.stage("install, history, first champion"):
            self.p.start_infrastructure()
            self.p.start_ingestor()
            self.p.sim.use("popularity")
            self.p.simulate(self.p.s.history_minutes, 0.0, "history")
            self.p.wait_ingested()
            data = ["data.lake_root=/data/lake", "data.registry_root=/data/registry"]
            out = self.p.job("bootstrap-snapshot", "ingestor",
                             ["ingestor", "snapshot", "--summary", *data])
            snapshot = json.loads(out[out.index("{"):out.rindex("}") + 1])["snapshot_id"]
            self.p.job("bootstrap-champion", "trainer", [
                "trainer", *data, f"snapshot={snapshot}",
                "trainer.output_dir=/tmp/trainer-runs", "candidates=[popularity]",
                "trainer.evaluate=false", "promote=true",
                "trainer.pushgateway=movierec-pushgateway.movierec.svc:9091"])
            kubectl("wait", "--for=condition=Ready", f"inferenceservice/{ISVC}", "--timeout=600s")
        self.watcher.start()
        # the champion last moved 49 hours ago, as far as the alert can tell: it must fire
        self.push_stale_champion()

    def push_stale_champion(self) -> None:
        from movierec_core.pushed_metrics import push_champion_moved

        ip = kubectl("get", "svc", "movierec-pushgateway", "-o",
                     "jsonpath={.spec.clusterIP}").stdout.strip()
        version = self.p.registry_summary().get("champion") or "v0001"
        pushed = push_champion_moved(f"{ip}:9091", "movierec", version,
                                     at=time.time() - 49 * 3600)
        self.results["stale_champion_pushed"] = pushed

    def live_traffic(self) -> None:
        """The simulated service on the wall clock from the next minute on, until the end."""
        s = self.p
        rest = (1 - s.s.router_share) / 2
        s.sim.use_arms([("url", s.s.router_share, f"http://{s.router_address}"),
                        ("oracle", rest), ("popularity", rest)])
        start = now_utc().replace(second=0, microsecond=0) + timedelta(minutes=1)
        s.sim.advance_to(start)
        # each simulated minute is sent 2 s after it begins: the router switches weights on
        # the minute, before any request of that minute arrives
        time.sleep(max(0.0, (start - now_utc()).total_seconds() + 2))
        s.live_start = start.isoformat()
        self.live_from = start
        s.sim.start(minutes=0, sink=s.sink, speed=1.0)
        self.console.print(f"   live traffic on the wall clock from {start:%H:%M:%S} UTC")

    # ----------------------------------------------------------------- workflows
    def submit(self, *args: str) -> str:
        out = argo("submit", "--from", f"workflowtemplate/{TEMPLATE}", "-o", "json", *args)
        return json.loads(out.stdout)["metadata"]["name"]

    def wait_workflow(self, name: str, timeout: float = 3600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            wf = json.loads(kubectl("get", "workflow", name, "-o", "json").stdout)
            phase = wf.get("status", {}).get("phase")
            nodes = wf.get("status", {}).get("nodes", {})
            running = sorted({n["displayName"] for n in nodes.values()
                              if n.get("phase") == "Running" and n.get("type") == "Pod"})
            self.p.status.update(f"{name}: {phase or 'Pending'} {','.join(running)}")
            if phase in ("Succeeded", "Failed", "Error"):
                return wf
            time.sleep(5)
        raise RuntimeError(f"workflow {name} did not finish in {timeout:.0f} s")

    @staticmethod
    def summary(wf: dict[str, Any]) -> dict[str, Any]:
        status = wf.get("status", {})
        steps = {}
        for node in status.get("nodes", {}).values():
            if node.get("type") != "Pod":
                continue
            started, finished = node.get("startedAt"), node.get("finishedAt")
            seconds = None
            if started and finished:
                seconds = (datetime.fromisoformat(finished.rstrip("Z"))
                           - datetime.fromisoformat(started.rstrip("Z"))).total_seconds()
            steps[node["displayName"]] = {"phase": node.get("phase"), "seconds": seconds,
                                          "message": node.get("message", "")[:300],
                                          "outputs": (node.get("outputs") or {}).get("result", "")[:500]}
        return {"name": wf["metadata"]["name"], "phase": status.get("phase"),
                "message": status.get("message", "")[:300], "steps": steps}

    @staticmethod
    def canary_outcome(logs: str) -> dict[str, Any] | None:
        """The canary step's last line (``{"experiment", "outcome", "windows", ...}``), with or
        without ``kubectl logs --prefix``'s ``[pod/<name>/<container>]`` in front."""
        for line in reversed(logs.splitlines()):
            start = line.find("{")
            if start < 0 or '"outcome"' not in line:
                continue
            try:
                found = json.loads(line[start:])
            except ValueError:
                continue
            if isinstance(found, dict) and "outcome" in found:
                decisions = [m.group(1) for m in map(_DECISION.search, logs.splitlines()) if m]
                if decisions:  # why it ended where it did (the controller's last verdict)
                    found = {**found, "last_decision": decisions[-1]}
                return found
        return None

    def saved_canary_outcome(self, name: str) -> dict[str, Any] | None:
        """Save the workflow's step logs in the run directory (``--recheck`` reads them) and
        return its canary step's outcome."""
        logs = kubectl("logs", "-l", f"workflows.argoproj.io/workflow={name}", "--tail=-1",
                       "-c", "main", "--prefix", check=False).stdout
        (self.p.logs / f"workflow-{name}.log").write_text(logs)
        return self.canary_outcome(logs)

    def served_version(self, variant: str, user: int = 1) -> str:
        resp = httpx.get(f"http://{self.p.router_address}/recommend/{user}",
                         headers={"x-movierec-variant": variant}, timeout=10)
        return resp.headers.get("x-model-version", "") if resp.status_code == 200 else ""

    def pipeline_promotes(self) -> None:
        with self.stage("Argo run: snapshot → train → evaluate → gate → register → canary"):
            before = self.p.registry_summary()
            name = self.submit()
            wf = self.wait_workflow(name)
            summary = self.summary(wf)
            summary["canary"] = self.saved_canary_outcome(name)
            after = self.p.registry_summary()
            summary["champion_before"], summary["champion_after"] = before["champion"], after["champion"]
            deadline = time.monotonic() + 120
            served = ""
            while time.monotonic() < deadline:
                served = self.served_version("control")
                if served == after["champion"]:
                    break
                time.sleep(2)
            summary["primary_serves"] = served
            self.results["workflows"]["promotion"] = summary
            self.console.print(f"   {name}: {summary['phase']}, canary "
                               f"{(summary['canary'] or {}).get('outcome')}, champion "
                               f"{before['champion']} → {after['champion']}, served {served}")

    def gate_fails(self) -> None:
        with self.stage("Argo run whose quality gate fails"):
            versions = len(self.p.registry_summary()["versions"])
            name = self.submit("-p", "min-ndcg-at-10=0.99")
            summary = self.summary(self.wait_workflow(name))
            summary["versions_before"] = versions
            summary["versions_after"] = len(self.p.registry_summary()["versions"])
            self.results["workflows"]["gate_failed"] = summary
            self.console.print(f"   {name}: {summary['phase']}; gate: "
                               f"{summary['steps'].get('quality-gate', {}).get('message')}")

    def bad_challenger_rolls_back(self) -> None:
        with self.stage("bad challenger: registered, canary, rolled back"):
            version = self.p.job("bad-challenger", "trainer", [],
                                 code=BAD_CHALLENGER).strip().splitlines()[-1]
            champion = self.p.registry_summary()["champion"]
            name = self.submit("--entrypoint", "canary", "-p", "metrics={}")
            wf = self.wait_workflow(name)
            summary = self.summary(wf)
            summary["canary"] = self.saved_canary_outcome(name)
            summary["challenger"] = version
            summary["champion_kept"] = self.p.registry_summary()["champion"] == champion
            self.results["workflows"]["rollback"] = summary
            self.console.print(f"   {name}: {summary['phase']}, canary "
                               f"{(summary['canary'] or {}).get('outcome')} after "
                               f"{(summary['canary'] or {}).get('windows')} windows")

    def cron_and_mutex(self) -> None:
        with self.stage("CronWorkflow fires; the mutex holds a second run"):
            patch = {"spec": {"schedules": ["* * * * *"], "suspend": False}}
            kubectl("patch", "cronworkflow", TEMPLATE, "--type", "merge", "-p", json.dumps(patch))
            deadline, fired = time.monotonic() + 180, ""
            while time.monotonic() < deadline and not fired:
                out = kubectl("get", "workflows", "-l",
                              f"workflows.argoproj.io/cron-workflow={TEMPLATE}", "-o",
                              "jsonpath={.items[*].metadata.name}").stdout.split()
                fired = out[0] if out else ""
                time.sleep(3)
            kubectl("patch", "cronworkflow", TEMPLATE, "--type", "merge",
                    "-p", json.dumps({"spec": {"suspend": True, "schedules": ["0 3 * * *"]}}))
            second = self.submit("-p", "reason=manual-while-cron-runs")
            waiting = ""
            for _ in range(30):  # whichever of the two gets the lock, the other must wait
                for name in (second, fired):
                    wf = json.loads(kubectl("get", "workflow", name, "-o", "json",
                                            check=False).stdout or "{}")
                    status = wf.get("status", {})
                    if status.get("phase") in ("Pending", None) and "lock" in status.get(
                            "message", ""):
                        waiting = f"{name}: {status['message']}"
                        break
                if waiting:
                    break
                time.sleep(2)
            for name in (second, fired):
                if name:
                    argo("terminate", name, check=False)
            self.results["cron"] = {"fired": fired, "second_run": second,
                                    "second_waited_for_lock": waiting}
            self.console.print(f"   cron fired {fired or 'nothing'}; {second}: {waiting or 'not held'}")

    # ----------------------------------------------------------------- the rest
    def screenshot(self) -> None:
        with self.stage("Argo UI screenshot (headless Chromium)"):
            wf = self.results["workflows"].get("promotion", {}).get("name")
            script = ROOT / "cluster" / "argo_screenshot.cjs"
            res = subprocess.run(["node", str(script), f"{ARGO_UI}/workflows/{NAMESPACE}/{wf}",
                                  str(SCREENSHOT)], cwd=ROOT, capture_output=True, text=True,
                                 timeout=180, env={**os.environ, "NODE_PATH": str(
                                     ROOT / ".cache" / "screenshot" / "node_modules")})
            self.results["screenshot"] = {"ok": res.returncode == 0, "path": str(SCREENSHOT),
                                          "workflow": wf, "log": (res.stdout + res.stderr)[-500:]}

    def failed_requests(self) -> dict[str, int]:
        from demo.report import read_table
        from movierec_core import lake

        req = read_table(self.p.lake_root, lake.RECOMMENDATION_REQUESTS,
                         ["time", "server", "status"])
        live = req[(req["server"] == self.p.router_address)
                   & (req["time"] >= (self.live_from or datetime.min))]
        return {"requests": int(len(live)), "failed": int((live["status"] != 200).sum())}

    def pods(self) -> dict[str, Any]:
        out = kubectl("get", "pods", "-A", "-o", "json", check=False)
        items = json.loads(out.stdout)["items"] if out.returncode == 0 else []
        restarts = {f"{i['metadata']['namespace']}/{i['metadata']['name']}":
                    sum(c.get("restartCount", 0) for c in i["status"].get("containerStatuses", []))
                    for i in items}
        return {"total": len(items),
                "running": sum(1 for i in items if i["status"].get("phase") == "Running"),
                "restarts": {k: v for k, v in restarts.items() if v}}

    def write(self, t0: float) -> Path:
        from bench.common import write_result

        figures = {
            "duration_s": round(time.monotonic() - t0, 1), "stages_s": self.stages,
            **self.results, "weights_configmap_over_time": self.watcher.weights,
            "isvc_canary_percent_over_time": self.watcher.isvc,
            "prometheus_router_weights_over_time": self.watcher.prometheus_weights,
            "alerts_first_firing": self.watcher.alerts, "canary_settings": CANARY,
            "settings": {"users": self.p.s.users, "history_minutes": self.p.s.history_minutes},
        }
        return write_result("cluster", figures, targets_of(figures))

    def run(self) -> int:
        t0 = time.monotonic()
        try:
            self.bring_up()
            self.live_traffic()
            self.pipeline_promotes()
            self.gate_fails()
            self.bad_challenger_rolls_back()
            self.cron_and_mutex()
            # the alerts' `for` and the scrape/evaluation intervals: give them time to fire
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and not {
                    "MovierecNoNewChampion", "MovierecCanaryRolledBack"} <= set(self.watcher.alerts):
                self.p.status.update(f"alerts firing so far: {sorted(self.watcher.alerts)}")
                time.sleep(10)
            self.screenshot()
            self.p.sim.stop()
            self.p.sim.join()
            self.p.sink.flush()
            self.p.wait_ingested(timeout=1800)
            self.results["requests"] = self.failed_requests()
            self.results["pods"] = self.pods()
        finally:
            self.watcher.stop()
            path = self.write(t0)
            self.console.print(f"cluster-test: {path}")
            self.p.close()
        targets = json.loads(path.read_text())["targets"]
        for name, ok in targets.items():
            self.console.print(f"  {'✓' if ok else '✗'} {name}")
        return 0 if all(targets.values()) else 1


def targets_of(r: dict[str, Any]) -> dict[str, bool]:
    """What ``make cluster-test`` checks, from its figures (``bench/results/cluster.json``)."""
    wfs = r.get("workflows", {})
    promo, gate, back = wfs.get("promotion", {}), wfs.get("gate_failed", {}), wfs.get("rollback", {})
    requests = r.get("requests", {})
    rollback_windows = (back.get("canary") or {}).get("windows")
    alerts = r.get("alerts_first_firing", {})
    return {
        "pipeline Succeeded": promo.get("phase") == "Succeeded",
        "canary promoted the challenger": (promo.get("canary") or {}).get("outcome") == "promoted",
        "the InferenceService serves the promoted version":
            bool(promo.get("champion_after")) and promo.get("primary_serves") == promo.get("champion_after"),
        "a failing gate stops before registering and says why":
            gate.get("phase") == "Failed"
            and gate.get("steps", {}).get("quality-gate", {}).get("phase") == "Failed"
            and "ndcg@10" in gate.get("steps", {}).get("quality-gate", {}).get("message", "")
            and "register" not in gate.get("steps", {})
            and gate.get("versions_after") == gate.get("versions_before"),
        "bad challenger rolled back within two windows":
            (back.get("canary") or {}).get("outcome") == "rolled_back"
            and rollback_windows is not None and rollback_windows <= 2,
        "0 failed /recommend requests": requests.get("failed") == 0 and requests.get("requests", 0) > 0,
        "the CronWorkflow fired": bool(r.get("cron", {}).get("fired")),
        "a second run waits for the mutex": bool(r.get("cron", {}).get("second_waited_for_lock")),
        "MovierecNoNewChampion fired": "MovierecNoNewChampion" in alerts,
        "MovierecCanaryRolledBack fired": "MovierecCanaryRolledBack" in alerts,
        "screenshot of the UI": bool(r.get("screenshot", {}).get("ok")),
    }


def mutex_wait_from_controller_log(workflows: set[str | None],
                                   logs: Path = ROOT / ".cache" / "cluster" / "pod-logs") -> str:
    """``<workflow>: Waiting for <ns>/Mutex/<name> lock...`` from the workflow controller's
    pod log, for one of ``workflows``, or ""."""
    pattern = re.compile(r'-> (Waiting for [^"]*Mutex[^"]* lock[^"]*)" namespace=\S+ '
                         r'workflow=(\S+)')
    for path in sorted(logs.glob("argo_workflow-controller*/workflow-controller/*.log")):
        for line in path.read_text(errors="replace").splitlines():
            m = pattern.search(line)
            if m and m.group(2) in workflows:
                return f"{m.group(2)}: {m.group(1)}"
    return ""


# the canary controller's verdict after a window: "window 1 at 5 %: rollback ['p99 ...']"
_DECISION = re.compile(r"(window \d+ at \d+ %: \w+ \[.*\])\s*$")


def recheck(run_dir: Path, path: Path = RESULTS_PATH) -> int:
    """Re-derive the canary outcomes of ``cluster.json`` from the workflow logs the run saved
    (``<run-dir>/logs/workflow-<name>.log``) and recompute its targets; the run's figures,
    date and load averages stay as they were, and ``rechecked_at`` says when and why."""
    r = json.loads(path.read_text())
    changed = []
    for key, summary in r.get("workflows", {}).items():
        log_path = run_dir / "logs" / f"workflow-{summary.get('name')}.log"
        if not log_path.exists():
            continue
        outcome = ClusterTest.canary_outcome(log_path.read_text())
        if outcome != summary.get("canary"):
            summary["canary"] = outcome
            changed.append(key)
    cron = r.get("cron", {})
    if cron and not cron.get("second_waited_for_lock"):
        # the controller's own log says which run waited for the mutex (the run looked at one
        # of the two only)
        waited = mutex_wait_from_controller_log({cron.get("fired"), cron.get("second_run")})
        if waited:
            cron["second_waited_for_lock"] = waited
            changed.append("cron (from the workflow controller's log)")
    r["targets"] = targets_of(r)
    r["rechecked_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    r["rechecked"] = (f"canary outcomes re-read from {run_dir}/logs for: {', '.join(changed)}"
                      if changed else "nothing changed")
    path.write_text(json.dumps(r, indent=2, sort_keys=True) + "\n")
    print(r["rechecked"])
    for name, ok in r["targets"].items():
        print(f"  {'✓' if ok else '✗'} {name}")
    return 0 if all(r["targets"].values()) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo.cluster_test", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=60_000)
    ap.add_argument("--history-minutes", type=int, default=180)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", action="store_true", help="leave the release installed")
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--recheck", action="store_true",
                    help="no run: re-read the canary outcomes of bench/results/cluster.json from "
                         "the workflow logs saved in --run-dir and recompute its targets")
    args = ap.parse_args(argv)
    if args.recheck:
        if args.run_dir is None:
            ap.error("--recheck needs --run-dir (where the run saved its logs)")
        return recheck(args.run_dir)
    settings = DemoSettings(users=args.users, seed=args.seed, history_minutes=args.history_minutes,
                            router_share=ROUTER_SHARE)
    if args.run_dir is not None:
        settings.run_dir = args.run_dir
    return ClusterTest(settings, Console(), args.keep).run()


if __name__ == "__main__":
    sys.exit(main())
