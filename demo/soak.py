"""``python -m demo.soak`` (``make soak``): hours of simulated time on the whole platform.

Reuses :class:`demo.platform.Platform` (Kafka broker, simulator world + metadata API, ingestor,
trainer, model servers behind the router, Prometheus) and then runs the closed loop in segments
of simulated time, fast-forwarded, with, at segment boundaries:

* **scheduled retraining** every ``retrain_every`` simulated minutes: snapshot →
  ``python -m trainer`` (ALS, fast retrain) registering a new version as ``challenger``;
* an **injected drift** at ``drift_at`` (the simulator's taste shift and sign-up shift);
* the **drift job** (``python -m drift``, reference vs current window of
  ``drift_window_minutes`` each over the lake) every ``drift_check_every`` minutes; its own
  retrain trigger (``drift.retrain.mode=local``) runs the trainer when it detects drift;
* a **canary promotion**: the drift-retrained challenger on a new model server, the canary
  controller (``python -m experiments canary``, router target, Kafka telemetry) steps it
  5 → 25 → 50 → 100 % and moves the registry's ``champion`` alias;
* a **second promotion** (``second_promotion``): the next retrain after the drift, on more of
  the new tastes, through its own canary (issue 22 judges recovery within two retrains);
* a **canary rollback**: the simulator's random endpoint as the challenger, rolled back.

At the end: every event reconciled against the simulator's ledger, a report (markdown + JSON)
and one plot of watch-through over simulated time per arm / variant with the events marked.
Ctrl-C (or SIGTERM) or the end stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from rich.console import Console
from rich.markdown import Markdown

from demo.platform import ROOT, DemoSettings, Platform, run_step, run_until_report
from demo.report import read_table, reconcile, wilson
from movierec_core import lake
from movierec_core.watch_through import DEFAULT_MIN_MINUTES, request_outcomes

EXPERIMENT = "demo-ab"  # the experiment Platform.serve starts the router with (the hash salt)
WINDOW_MINUTES = 60  # watch-through join window (as the demo's report)
MIN_BUCKET = 15  # matured requests an arm needs in a simulated hour to be drawn / tabled
DOCS = ROOT / "docs"


@dataclass
class SoakSettings(DemoSettings):
    users: int = 4_000
    history_minutes: int = 600
    live_minutes: int = 600  # simulated minutes of closed loop (may run on to finish a canary)
    router_share: float = 0.8
    segment_minutes: int = 30
    retrain_every: int = 120
    drift_at: int = 180  # loop minute of the injected drift
    drift_kinds: tuple[str, ...] = ("taste_shift", "signup_shift")
    taste_shift_share: float = 0.5
    drift_check_every: int = 60
    drift_window_minutes: int = 60  # reference and current windows of the drift job
    # the first hour of the loop is a transient (lists switch from popularity to the model, the
    # online store fills): the drift job's reference window starts after it
    drift_warmup_minutes: int = 60
    canary_window_s: float = 25.0
    canary_min_requests: int = 25
    # non-inferiority margin and patience per step: at 5 % of a few thousand users the
    # challenger gets a few dozen matured requests a window, so the shipped 0.05 margin is
    # out of reach within a soak (see docs/soak.md)
    canary_max_drop: float = 0.15
    canary_windows_per_step: int = 6
    canary_segment_minutes: int = 10  # shorter segments while a canary runs
    canary_join_window_s: float = 1800.0
    max_extra_minutes: int = 480  # simulated minutes beyond live_minutes to let canaries end
    # after a promoted drift retrain, the next retrain goes through a canary of its own
    second_promotion: bool = True
    request_prob: float = 1.0  # every pick preceded by a /recommend call (more canary evidence)
    # how the soak's retrains weigh time (issue 22): the temporal evaluation, on the latest
    # tenth of events, picks the half-life (simulated hours; 0 = none) that ranks best there
    retrain_overrides: tuple[str, ...] = (
        "trainer.evaluate=true", "trainer.test_fraction=0.1",
        "trainer.recency.half_lives_h=[0,1,3,9]", "trainer.recency.user_half_lives_h=[0,1,3,9]",
        "trainer.report_plots=false")
    publish: bool = True  # copy the plot and the report into docs/
    run_dir: Path = field(
        default_factory=lambda: ROOT / ".cache" / "soak" / time.strftime("%Y%m%d-%H%M%S"))


class Soak:
    def __init__(self, settings: SoakSettings, console: Console) -> None:
        self.s = settings
        self.console = console
        self.p = Platform(settings, console)
        self.t = 0  # loop minutes done
        self.wall0 = time.monotonic()
        self.events: list[dict[str, Any]] = []
        self.weights_log: list[tuple[str, dict[str, float]]] = []
        self.drift_runs: list[dict[str, Any]] = []
        self.trainings: list[dict[str, Any]] = []
        self.canaries: list[dict[str, Any]] = []
        self.canary: dict[str, Any] | None = None  # the running one
        self.retrain_pending = False
        self.drift_retrained_version: str | None = None
        self.file_sink: Any = None  # the telemetry file of a file-telemetry canary

    # ------------------------------------------------------------------ helpers
    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.p.ports['router']}"

    def event(self, kind: str, text: str, **extra: Any) -> dict[str, Any]:
        ev = {"minute": self.t, "sim_time": self.p.sim.ledger.last_time, "kind": kind,
              "wall_s": round(time.monotonic() - self.wall0, 1), "text": text, **extra}
        self.events.append(ev)
        self.p.status.clear()
        self.console.print(f"   [magenta]t={self.t / 60:.1f} h[/] {kind}: {text}")
        return ev

    def router_weights(self) -> dict[str, float]:
        snap = httpx.get(f"{self.router_url}/admin/weights", timeout=5).json()
        return {v["name"]: float(v["weight"]) for v in snap["variants"]}

    def set_weights(self, weights: dict[str, float], urls: dict[str, list[str]] | None = None) -> None:
        body: dict[str, Any] = {"weights": weights, "source": "soak"}
        if urls:
            body["urls"] = urls
        httpx.post(f"{self.router_url}/admin/weights", json=body, timeout=5).raise_for_status()
        self.note_weights()

    def note_weights(self) -> None:
        try:
            w = self.router_weights()
        except httpx.HTTPError:
            return
        if not self.weights_log or self.weights_log[-1][1] != w:
            self.weights_log.append((self.p.sim.ledger.last_time, w))

    def newest_version(self) -> str:
        summary = self.p.registry_summary()
        return summary["versions"][-1]["version"] if summary["versions"] else ""

    def recency_of(self, version: str) -> dict[str, float | None]:
        """The recency half-lives (hours: every event's, the users' own) the temporal
        evaluation chose for ``version``."""
        from movierec_core.registry import open_registry

        try:
            manifest = open_registry(str(self.p.registry_root)).show("movierec", version).manifest
        except Exception:  # noqa: BLE001 - a fact for the report, not a failure
            manifest = {}
        recency = manifest.get("recency") or {}
        return {"half_life_h": recency.get("half_life_h"),
                "user_half_life_h": recency.get("user_half_life_h")}

    def snapshot(self) -> str:
        out = run_step(["python", "-m", "ingestor", "snapshot", *self.p.common()],
                       self.p.logs / f"snapshot-{self.t:04d}.log", "snapshot")
        return json.loads(out[out.index("{"):])["snapshot_id"]

    # ------------------------------------------------------------------ the loop
    def segment(self, minutes: int) -> None:
        p, sim = self.p, self.p.sim
        ticks = [0]
        t0, start_lines = time.monotonic(), sim.ledger.lines_total

        def on_tick(_simulation: Any, _lines: int) -> None:
            ticks[0] += 1
            if self.canary is not None:  # a canary moves weights: note them in simulated time
                self.note_weights()

        from simulator.sinks import TeeSink

        sink = TeeSink(p.sink, self.file_sink) if self.file_sink is not None else p.sink
        sim.start(minutes=minutes, sink=sink, speed=self.s.live_speed, on_tick=on_tick)
        thread = sim._thread
        while thread is not None and thread.is_alive():
            canary = ""
            if self.canary is not None:
                w = self.weights_log[-1][1].get("challenger", 0) if self.weights_log else 0
                canary = f" | canary {self.canary['kind']} at {w:.0f} %"
            produced = sim.ledger.lines_total - start_lines
            p.status.update(f"loop {(self.t + ticks[0]) / 60:.2f} h / {self.s.live_minutes / 60:.0f} h"
                            f" | {produced / max(time.monotonic() - t0, 1e-9):,.0f} lines/s"
                            f" | ingested {p.ingested_total():,}{canary}")
            thread.join(0.5)
        sim.join()
        sink.flush()
        self.t += minutes

    def run_loop(self) -> None:
        s, p = self.s, self.p
        p.status.stage(f"soak: {s.live_minutes / 60:.0f} simulated hours in segments of "
                       f"{s.segment_minutes} min; retrain every {s.retrain_every} min, drift at "
                       f"{s.drift_at} min")
        rest = (1 - s.router_share) / 2
        p.sim.use_arms([("url", s.router_share, self.router_url), ("oracle", rest),
                        ("popularity", rest)])
        p.sim.simulation.cfg.behaviour.request_prob = s.request_prob
        self.set_weights({"champion": 100, "challenger": 0})
        p.live_start = p.sim.ledger.last_time
        self.weights_log = [(p.live_start, self.router_weights())]
        self.event("loop", f"closed loop starts; champion {p.registry_summary()['champion']} at 100 %")
        t0 = time.monotonic()
        while True:
            self.boundary()
            done = self.t >= s.live_minutes and self.canary is None and self.next_canary() is None
            if done or self.t >= s.live_minutes + s.max_extra_minutes:
                break
            if self.t >= s.live_minutes and self.canary is None and not done:
                self.event("extend", "running on: a canary has not run yet")
            self.segment(s.segment_minutes if self.canary is None
                         else min(s.segment_minutes, s.canary_segment_minutes))
        if self.canary is not None:
            self.event("canary", "soak over with the canary still running: stopped")
            p.sup.stop(self.canary["name"])
            self.finish_canary()
        self.s.live_minutes = self.t
        p.timings["closed_loop_s"] = time.monotonic() - t0

    def boundary(self) -> None:
        s = self.s
        if self.canary is not None and not self.p.sup.children[self.canary["name"]].alive():
            self.finish_canary()
        if self.t == s.drift_at:
            drift = self.p.sim.simulation.drift
            drift.taste_shift_share = s.taste_shift_share
            record = self.p.sim.simulation.apply_drift(list(s.drift_kinds))
            self.event("drift_injected", f"{', '.join(s.drift_kinds)} "
                       f"({record.get('users_shifted', 0):,} users' tastes rotated)", record=record)
        retrained = False
        if (self.canary is None and self.t >= s.drift_warmup_minutes + 2 * s.drift_window_minutes
                and self.t % s.drift_check_every == 0):
            retrained = self.drift_job()
        if self.t > 0 and self.t % s.retrain_every == 0:
            self.retrain_pending = True
        if self.retrain_pending and not retrained:
            if self.canary is None:
                self.scheduled_retrain()
            elif self.t % s.retrain_every == 0:
                self.event("retrain_deferred", "a canary is running: scheduled retrain deferred")
        if self.canary is None:
            match self.next_canary():
                case ("promotion", version):
                    self.start_promotion_canary(version)
                case ("rollback", _):
                    self.start_rollback_canary()

    def next_canary(self) -> tuple[str, str] | None:
        """The canary due now, if any: (kind, version). In order: the promotion of the drift
        retrain (or, late without one, of the newest retrain); with ``second_promotion``, once
        it is promoted, that of the next retrain after it; then the rollback drill."""
        s = self.s
        promotions = [c for c in self.canaries if c["kind"] == "promotion"]
        if not promotions:
            late = self.t >= s.drift_at + 2 * s.drift_check_every
            if self.drift_retrained_version:
                return "promotion", self.drift_retrained_version
            if late and self.trainings[-1]["trigger"] != "first":
                return "promotion", self.trainings[-1]["version"]
            return None
        first = promotions[0]
        drilled = any(c["kind"] == "rollback" for c in self.canaries)
        if (s.second_promotion and len(promotions) == 1 and first["outcome"] == "promoted"
                and not drilled):
            trained = next((t["minute"] for t in self.trainings
                            if t["version"] == first["version"]), self.t)
            later = [t for t in self.trainings if t["minute"] > trained]
            if later:
                return "promotion", later[0]["version"]
            if self.t < s.live_minutes:
                return None  # the next retrain comes before the rollback drill
        return None if drilled else ("rollback", "random")

    def scheduled_retrain(self) -> None:
        p = self.p
        p.wait_ingested()
        snap = self.snapshot()
        t0 = time.monotonic()
        out = run_step(["python", "-m", "trainer", *p.common(("data",)), f"snapshot={snap}",
                        "candidates=[als]", *self.s.champion_overrides,
                        *self.s.retrain_overrides],
                       p.logs / f"trainer-scheduled-{self.t:04d}.log", "scheduled retrain")
        version = self.newest_version()
        self.trainings.append({"minute": self.t, "trigger": "scheduled", "version": version,
                               "snapshot": snap, "seconds": round(time.monotonic() - t0, 1),
                               **self.recency_of(version),
                               "line": out.strip().splitlines()[-1] if out.strip() else ""})
        self.retrain_pending = False
        self.event("retrain", f"scheduled: snapshot {snap} → {version} registered as challenger",
                   version=version)

    def drift_job(self) -> bool:
        """The drift job over the lake; its own trigger retrains when it detects drift (not
        while a drift-triggered model is in or past its canary: one promotion per soak)."""
        s, p = self.s, self.p
        p.wait_ingested()
        retrain = self.drift_retrained_version is None
        before = self.newest_version()
        hours = s.drift_window_minutes / 60
        args = ["python", "-m", "drift", *p.common(("data",)), f"drift.current_hours={hours}",
                f"drift.reference_hours={hours}", f"drift.retrain.enabled={str(retrain).lower()}"]
        if retrain:
            snap = self.snapshot()  # the trainer the trigger runs takes the newest snapshot
            command = ["{python}", "-m", "trainer", *p.common(("data",)), f"snapshot={snap}",
                       "candidates=[als]", *s.champion_overrides, *s.retrain_overrides]
            args += ["drift.retrain.mode=local",
                     "drift.retrain.command=[" + ",".join(f"'{c}'" for c in command) + "]"]
        t0 = time.monotonic()
        try:
            out = run_step(args, p.logs / f"drift-{self.t:04d}.log", "drift job")
        except RuntimeError as exc:  # a failed run is a fact for the report, not the end
            self.drift_runs.append({"minute": self.t, "drift": False, "drifted_detectors": [],
                                    "retrain": None, "seconds": round(time.monotonic() - t0, 1),
                                    "summary": f"error: {exc}"[:300], "report": ""})
            self.event("drift_error", str(exc)[:200])
            return False
        reports = sorted((p.lake_root / "_drift").glob("*.json"))
        report = json.loads(reports[-1].read_text()) if reports else {}
        run = {"minute": self.t, "drift": bool(report.get("drift")),
               "drifted_detectors": report.get("drifted_detectors", []),
               "retrain": report.get("retrain"), "seconds": round(time.monotonic() - t0, 1),
               "summary": out.strip().splitlines()[0] if out.strip() else "",
               "report": str(reports[-1]) if reports else ""}
        self.drift_runs.append(run)
        if not run["drift"]:
            self.event("drift_check", "no drift", drift=False)
            return False
        self.event("drift_detected", f"drifted: {', '.join(run['drifted_detectors'])}", drift=True)
        after = self.newest_version()
        if retrain and run["retrain"] and run["retrain"].get("ok") and after != before:
            self.drift_retrained_version = after
            self.trainings.append({"minute": self.t, "trigger": "drift", "version": after,
                                   "seconds": run["retrain"].get("duration_s"),
                                   **self.recency_of(after)})
            self.retrain_pending = False
            self.event("retrain", f"drift-triggered (drift's local trigger): {after} registered "
                       "as challenger", version=after, trigger="drift")
            return True
        return False

    # ------------------------------------------------------------------ canaries
    @property
    def telemetry_path(self) -> Path:
        return self.p.run_dir / "telemetry.lines"

    def canary_argv(self, report_dir: Path, challenger_url: str, promote: bool,
                    telemetry: str) -> list[str]:
        s = self.s
        source = (["experiments.canary.telemetry=kafka"] if telemetry == "kafka" else
                  ["experiments.canary.telemetry=file",
                   f"experiments.canary.telemetry_file={self.telemetry_path}"])
        return ["python", "-m", "experiments", "canary", *self.p.common(("kafka", "data")),
                f"experiments.name={EXPERIMENT}", f"experiments.report_dir={report_dir}",
                "experiments.canary.target=router", f"experiments.canary.router_url={self.router_url}",
                f"experiments.canary.challenger_urls=[{challenger_url}]",
                *source,
                f"experiments.canary.window_s={s.canary_window_s}",
                f"experiments.canary.min_requests={s.canary_min_requests}",
                f"experiments.canary.join_window_s={s.canary_join_window_s}",
                "experiments.canary.p99_slack_ms=150",
                f"experiments.canary.max_windows_per_step={s.canary_windows_per_step}",
                f"experiments.canary.max_watch_through_drop={s.canary_max_drop}",
                f"experiments.canary.promote_alias={str(promote).lower()}",
                f"experiments.canary.metadata_url=http://127.0.0.1:{self.p.ports['metadata_api']}"]

    def start_promotion_canary(self, version: str) -> None:
        p = self.p
        challenger = p.registry_summary()["challenger"]
        name = f"model-server-canary-{version}"
        port = p.port(name)
        p.sup.start(name, ["python", "-m", "model_server", *p.common(), f"serving.http_port={port}",
                           f"serving.alias={version}",
                           f"serving.provenance_log={p.run_dir / f'provenance-canary-{version}.jsonl'}"])
        url = f"http://127.0.0.1:{port}"
        p.sup.wait_http(name, f"{url}/v2/health/ready", timeout=180)
        for uid in range(1, 40):  # warm up: the canary judges p99 from its first window
            try:
                httpx.get(f"{url}/recommend/{uid}", timeout=5)
            except httpx.HTTPError:
                pass
        n = 1 + sum(c["kind"] == "promotion" for c in self.canaries)
        self.launch_canary("promotion", url, promote=True, version=version,
                           text=f"{version} (challenger alias → {challenger}) on a new model server "
                                f"{url}", label="promotion" + (f"-{n}" if n > 1 else ""))

    def start_rollback_canary(self) -> None:
        random = self.p.sim.start_endpoint("random", port=self.p.port("random-endpoint"))
        self.set_weights({"champion": 100, "challenger": 0})
        self.launch_canary("rollback", random.url, promote=False, version="random",
                           text=f"a bad challenger: the simulator's random endpoint {random.url}")

    def launch_canary(self, kind: str, url: str, promote: bool, version: str, text: str,
                      attempt: int = 1, telemetry: str = "kafka", label: str = "") -> None:
        from simulator.sinks import FileSink

        label = label or kind
        name = f"canary-{label}" + (f"-retry{attempt - 1}" if attempt > 1 else "")
        report_dir = self.p.run_dir / f"canary-{label}"
        if telemetry == "file" and self.file_sink is None:
            self.file_sink = FileSink(self.telemetry_path)  # the loop's lines, teed from now on
        self.p.sup.start(name, self.canary_argv(report_dir, url, promote, telemetry))
        self.canary = {"kind": kind, "label": label, "name": name, "url": url, "version": version,
                       "promote": promote, "text": text, "attempt": attempt,
                       "telemetry": telemetry,
                       "report_dir": str(report_dir), "start_minute": self.t,
                       "wall_start": time.monotonic(), "sim_start": self.p.sim.ledger.last_time}
        self.canary["event"] = self.event(f"canary_{kind}_start", text)

    def finish_canary(self) -> None:
        c, p = self.canary, self.p
        assert c is not None
        self.canary = None
        self.note_weights()
        state_path = Path(c["report_dir"]) / EXPERIMENT / "canary.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        windows = state.get("windows", [])
        exit_code = p.sup.children[c["name"]].process.returncode
        if not windows and exit_code not in (0, None) and c["attempt"] < 3:
            # e.g. the controller's Kafka consumer got no partition within its 5 s: the previous
            # canary's member of the same group (movierec-canary-<experiment>) is still timing out
            self.event("canary_retry", f"{c['kind']} canary exited {exit_code} before its first "
                       f"window (see logs/{c['name']}.log); relaunched with file telemetry")
            c["event"]["kind"] += "_failed"
            self.launch_canary(c["kind"], c["url"], c["promote"], c["version"], c["text"],
                               c["attempt"] + 1, telemetry="file", label=c["label"])
            return
        self.close_file_sink()
        start = pd.Timestamp(p.live_start)
        ev = c.pop("event")
        first = [t for t, w in self.weights_log if t >= c["sim_start"] and w.get("challenger", 0) > 0]
        if first:  # when the canary's first step reached the router, in simulated time
            ev["at_minute"] = round((pd.Timestamp(first[0]) - start) / pd.Timedelta(minutes=1), 1)
        decided = (round((pd.Timestamp(windows[-1]["event_time"]) - start) / pd.Timedelta(minutes=1), 1)
                   if windows else self.t)
        c.update({"end_minute": self.t, "decided_minute": decided, "outcome": state.get("outcome", "unknown"),
                  "final_percent": state.get("final_percent"), "windows": len(windows),
                  "steps": [h["weights"][1][1] for h in state.get("weights_history", [])
                            if len(h["weights"]) > 1],
                  "last_reasons": windows[-1]["reasons"] if windows else [],
                  "wall_s": round(time.monotonic() - c.pop("wall_start"), 1),
                  "exit_code": exit_code,
                  "report": str(Path(c["report_dir"]) / EXPERIMENT / "report.md")})
        self.canaries.append(c)
        champion = p.registry_summary()["champion"]
        self.event(f"canary_{c['outcome']}", f"{c['kind']} canary: {c['outcome']} after "
                   f"{c['windows']} windows, steps {c['steps']}; champion alias → {champion}",
                   outcome=c["outcome"], at_minute=decided)
        if c["kind"] == "promotion":
            # the champion replicas hot-swap to the promoted version (alias polling); the router
            # goes back to them and the canary's server is retired
            self.set_weights({"champion": 100, "challenger": 0})
            p.sup.stop(f"model-server-canary-{c['version']}")

    # ------------------------------------------------------------------ outputs
    def outcomes(self) -> pd.DataFrame:
        from experiments.online import WeightsHistory

        p = self.p
        req = read_table(p.lake_root, lake.RECOMMENDATION_REQUESTS,
                         ["time", "user_id", "server", "status", "movie_ids", "response_ms"])
        watches = read_table(p.lake_root, lake.WATCH_MINUTES, ["time", "user_id", "movie_id", "minute"])
        start = pd.Timestamp(p.live_start)
        end = pd.Timestamp(p.sim.ledger.last_time)
        req = req[req["time"] >= start].reset_index(drop=True)
        history = WeightsHistory(EXPERIMENT)
        for when, weights in self.weights_log:
            history.add(pd.Timestamp(when).to_pydatetime(), [(k, v) for k, v in weights.items()
                                                            if v > 0] or [("champion", 100.0)])
        router = f"127.0.0.1:{p.ports['router']}"
        times = pd.to_datetime(req["time"])
        req["arm"] = [f"router · {history.variant_of(int(u), t.to_pydatetime())}" if s == router else s
                      for s, u, t in zip(req["server"], req["user_id"], times, strict=True)]
        req["hour"] = ((times - start) / pd.Timedelta(hours=1)).astype(float)
        self.availability = self._availability(req[req["server"] == router])
        matured = req[times <= end - timedelta(minutes=WINDOW_MINUTES)]
        out = request_outcomes(matured, watches, DEFAULT_MIN_MINUTES, WINDOW_MINUTES)
        out["bucket"] = np.floor(out["hour"]).astype(int)
        return out

    @staticmethod
    def _availability(via_router: pd.DataFrame) -> dict[str, Any]:
        latency = via_router["response_ms"].to_numpy(float)
        ok = via_router["status"] == 200
        by_hour = via_router.assign(ok=ok, bucket=np.floor(via_router["hour"]).astype(int)) \
            .groupby("bucket")["ok"].mean()
        return {"requests": int(len(via_router)), "failed": int((~ok).sum()),
                "success_rate": float(ok.mean()) if len(via_router) else float("nan"),
                "worst_hour_success_rate": float(by_hour.min()) if len(by_hour) else float("nan"),
                "p50_ms": float(np.percentile(latency, 50)) if len(latency) else float("nan"),
                "p99_ms": float(np.percentile(latency, 99)) if len(latency) else float("nan"),
                "over_600ms": int((latency >= 600).sum())}

    def watch_through_table(self, out: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
        overall: dict[str, Any] = {}
        for arm, g in out.groupby("arm"):
            n, k = int(len(g)), int(g["watched_through"].sum())
            overall[str(arm)] = {"requests": n, "watch_through": k / n if n else float("nan"),
                                 "ci95": list(wilson(k, n))}
        hourly = out.groupby(["bucket", "arm"])["watched_through"].agg(["mean", "count"]).reset_index()
        return overall, hourly

    def markers(self) -> list[tuple[float, str, str]]:
        kinds = {"retrain": ("tab:gray", "retrain"), "drift_injected": ("tab:red", "drift injected"),
                 "drift_detected": ("darkred", "drift detected"),
                 "canary_promotion_start": ("tab:green", "canary start"),
                 "canary_promoted": ("green", "promoted"),
                 "canary_rollback_start": ("tab:purple", "bad canary start"),
                 "canary_rolled_back": ("purple", "rolled back")}
        out = []
        for ev in self.events:
            if ev["kind"] in kinds:
                color, label = kinds[ev["kind"]]
                if ev["kind"] == "retrain":
                    label = f"retrain ({ev.get('trigger', 'scheduled')}) {ev.get('version', '')}"
                    color = "tab:orange" if ev.get("trigger") == "drift" else color
                out.append((ev.get("at_minute", ev["minute"]) / 60, color, label))
        return out

    def plot(self, hourly: pd.DataFrame, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(11, 5.5))
        for arm, g in hourly.groupby("arm"):
            g = g[g["count"] >= MIN_BUCKET]
            if g.empty:
                continue
            ax.plot(g["bucket"] + 0.5, g["mean"], marker="o", ms=3, label=f"{arm}")
        seen: set[str] = set()
        for i, (x, color, label) in enumerate(self.markers()):
            ax.axvline(x, color=color, ls="--", lw=1.2, alpha=0.8)
            ax.text(x, 1.0 - 0.05 * (i % 6), f" {label}", color=color, fontsize=7,
                    transform=ax.get_xaxis_transform(), va="top")
            seen.add(label)
        ax.set_xlabel("simulated hours since the closed loop started")
        ax.set_ylabel(f"watch-through (≥ {DEFAULT_MIN_MINUTES} min of a listed movie "
                      f"within {WINDOW_MINUTES} min)")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"movierec soak: {self.s.users:,} users, {self.t / 60:.1f} simulated hours")
        ax.grid(alpha=0.3)
        ax.legend(loc="center right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def report(self) -> dict[str, Any]:
        p = self.p
        out = self.outcomes()
        overall, hourly = self.watch_through_table(out)
        plot = p.run_dir / "soak-watch-through.png"
        self.plot(hourly, plot)
        s = self.s
        report: dict[str, Any] = {
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(s).items()
                         if k not in ("run_dir",)},
            "run_dir": str(p.run_dir), "loop_minutes": self.t,
            "wall_s": round(time.monotonic() - self.wall0, 1),
            "events_timeline": self.events,
            "events": reconcile(p),
            "models": p.registry_summary(), "trainings": self.trainings,
            "drift_runs": self.drift_runs, "canaries": self.canaries,
            "availability": self.availability,
            "watch_through": overall,
            "watch_through_hourly": hourly.to_dict(orient="records"),
            "weights_log": self.weights_log,
            "timings_s": {k: round(v, 1) for k, v in p.timings.items()},
            "plot": str(plot),
        }
        if p.prom is not None:
            from devstack import prometheus

            try:
                report["prometheus"] = prometheus.summary(p.prom.url)
            except Exception as exc:  # noqa: BLE001 - the report stands without it
                report["prometheus"] = {"error": str(exc)}
        report["recovery"] = recovery(hourly, s.drift_at, self.trainings, self.canaries)
        c: dict[str, dict[str, Any]] = {}
        for x in self.canaries:  # the first of each kind
            c.setdefault(x["kind"], x)
        report["checks"] = {
            "no accepted event lost": report["events"]["reconciled"],
            "scheduled retraining ran": any(t["trigger"] == "scheduled" for t in self.trainings),
            "injected drift detected": any(r["drift"] and r["minute"] > s.drift_at
                                           for r in self.drift_runs),
            "drift triggered a retrain": any(t["trigger"] == "drift" for t in self.trainings),
            "no false drift alarm before the injection": not any(
                r["drift"] for r in self.drift_runs if r["minute"] <= s.drift_at),
            "canary promoted (5 → 25 → 50 → 100)": c.get("promotion", {}).get("outcome") == "promoted",
            "bad canary rolled back": c.get("rollback", {}).get("outcome") == "rolled_back",
            "/recommend success rate >= 99.9 %": bool(self.availability["success_rate"] >= 0.999),
            "within two retrains after the drift, the champion back to >= 90 % of its pre-drift "
            "ratio to the oracle": bool(report["recovery"].get("recovered")),
        }
        (p.run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        md = to_markdown(report, hourly)
        (p.run_dir / "report.md").write_text(md)
        if s.publish:
            shutil.copy(plot, DOCS / "soak-watch-through.png")
            (DOCS / "soak-report.md").write_text(md.replace(str(p.run_dir), "<run dir>"))
        return report

    def close_file_sink(self) -> None:
        if self.file_sink is not None:
            self.file_sink.close()
            self.file_sink = None
            self.telemetry_path.unlink(missing_ok=True)

    def close(self) -> None:
        self.close_file_sink()
        self.p.close()


def _hours(half_life: float | None) -> str:
    return f"{half_life:g} h" if half_life else "none"


def recovery(hourly: pd.DataFrame, drift_at: int, trainings: list[dict[str, Any]],
             canaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 22's recovery figure: the served model's watch-through over the oracle's, per
    simulated hour. Before the drift: the champion's. After it, for the drift retrain and the
    retrain after it (two retrains) that went through a promotion canary: each one's, as the
    challenger while its canary ran and as the champion once promoted, until the next one was
    promoted. ``recovered``: the newest of the two that was promoted (the drift retrain when
    neither was) averages at least 90 % of the pre-drift ratio over its hours."""
    ok = hourly[hourly["count"] >= MIN_BUCKET]
    wt = ok.pivot(index="bucket", columns="arm", values="mean")
    if "oracle" not in wt or "router · champion" not in wt:
        return {"recovered": False, "reason": "no oracle or champion hours"}
    drift_h = drift_at / 60
    pre = (wt["router · champion"] / wt["oracle"])[wt.index + 1 <= drift_h].dropna()
    retrains = [t for t in trainings if t["minute"] >= drift_at]
    first = next((i for i, t in enumerate(retrains) if t["trigger"] == "drift"), None)
    two = retrains[first:first + 2] if first is not None else retrains[:2]
    out: dict[str, Any] = {"pre_drift_ratio": round(float(pre.mean()), 4) if len(pre) else None,
                           "pre_drift_hours": [int(h) for h in pre.index],
                           "retrains_after_drift": [
                               {"minute": t["minute"], "trigger": t["trigger"],
                                "version": t["version"], "half_life_h": t.get("half_life_h"),
                                "user_half_life_h": t.get("user_half_life_h")}
                               for t in two]}
    if first is None or not len(pre):
        out.update(recovered=False, reason="no drift retrain or no pre-drift hours")
        return out
    promotions = [c for c in canaries if c["kind"] == "promotion"]
    canary_of: dict[str, dict[str, Any]] = {}
    for c in promotions:
        canary_of.setdefault(c.get("version", ""), c)
    served = [(t, canary_of[t["version"]]) for t in two if t["version"] in canary_of]
    promoted_at = sorted(c["decided_minute"] / 60 for c in promotions
                         if c.get("outcome") == "promoted")
    rows, per_retrain = [], []
    for t, c in served:
        decided_h = c["decided_minute"] / 60
        promoted = c.get("outcome") == "promoted"
        until_h = next((h for h in promoted_at if h > decided_h), float("inf"))
        mine = []
        for hour, row in wt.iterrows():
            if hour < t["minute"] / 60 or hour >= until_h:
                continue
            if hour < decided_h:
                arm = "router · challenger"
            elif promoted:
                arm = "router · champion"
            else:
                break
            if arm in row and row[arm] == row[arm] and row["oracle"] == row["oracle"]:
                mine.append({"hour": int(hour), "version": t["version"], "arm": arm,
                             "ratio": round(float(row[arm] / row["oracle"]), 4)})
        rows += mine
        if mine:
            ratio = float(np.mean([r["ratio"] for r in mine]))
            per_retrain.append({"version": t["version"], "trigger": t["trigger"],
                                "promoted": promoted, "hours": len(mine),
                                "ratio": round(ratio, 4),
                                "share_of_pre_drift": round(ratio / out["pre_drift_ratio"], 4)})
    out["after_retrain"] = rows
    out["by_retrain"] = per_retrain
    if not per_retrain:
        out.update(recovered=False, reason="the drift-retrained model served no full hour")
        return out
    judged = next((r for r in reversed(per_retrain) if r["promoted"]), per_retrain[0])
    out.update(judged_version=judged["version"], after_retrain_ratio=judged["ratio"],
               share_of_pre_drift=judged["share_of_pre_drift"],
               recovered=judged["ratio"] >= 0.9 * out["pre_drift_ratio"])
    return out


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.1%}"


def to_markdown(r: dict[str, Any], hourly: pd.DataFrame) -> str:
    s, e, a = r["settings"], r["events"], r["availability"]
    lines = [
        f"# movierec soak report ({datetime.now().isoformat(timespec='seconds')})", "",
        f"{s['users']:,} users; {s['history_minutes'] / 60:.0f} simulated hours of popularity-list "
        f"history, then {r['loop_minutes'] / 60:.1f} simulated hours of closed loop in "
        f"{s['segment_minutes']}-minute segments ({s['router_share']:.0%} of users via the router, "
        f"the rest split between the simulator's oracle and popularity arms); "
        f"{r['wall_s'] / 60:.1f} min wall.", "",
        "![watch-through over simulated time](soak-watch-through.png)", "",
        "## Checks", "",
    ]
    lines += [f"- {'✓' if ok else '✗'} {name}" for name, ok in r["checks"].items()]
    lines += ["", "## Timeline (simulated hours since the loop started)", "",
              "| t (h) | wall (s) | what | |", "|---:|---:|---|---|"]
    for ev in r["events_timeline"]:
        at = f" (at {ev['at_minute'] / 60:.2f} h)" if "at_minute" in ev else ""
        lines.append(f"| {ev['minute'] / 60:.1f} | {ev['wall_s']:.0f} | {ev['kind']} | "
                     f"{ev['text']}{at} |")
    lines += ["", "## Events", "", "| kind | produced (valid) | in the lake | lost |",
              "|---|---:|---:|---:|"]
    for kind in e["valid_by_kind"]:
        lines.append(f"| {kind} | {e['valid_by_kind'][kind]:,} | {e['lake_rows_by_kind'][kind]:,} | "
                     f"{e['lost_by_kind'][kind]:,} |")
    lines += ["", f"{e['produced_lines']:,} lines produced; {e['duplicates_delivered']:,} duplicate "
              f"deliveries dropped; DLQ {e['dlq_records']:,} records for {e['invalid_produced']:,} "
              f"invalid lines. Reconciled: **{e['reconciled']}**.", "", "## Models", "",
              "| version | model | aliases now | trained at (h) | trigger |", "|---|---|---|---:|---|"]
    trained = {t["version"]: t for t in r["trainings"]}
    for v in r["models"]["versions"]:
        t = trained.get(v["version"])
        lines.append(f"| {v['version']} | {v['model_type']} | {', '.join(v['aliases'])} | "
                     f"{t['minute'] / 60:.1f} | {t['trigger']} |" if t else
                     f"| {v['version']} | {v['model_type']} | {', '.join(v['aliases'])} | 0 | "
                     f"first training (the demo's champion / A-B challenger) |")
    lines += ["", "## Drift job runs", "", "| t (h) | drift | detectors | retrain | seconds |",
              "|---:|---|---|---|---:|"]
    for d in r["drift_runs"]:
        rt = d["retrain"]
        rt_text = "—" if not rt else f"{rt.get('mode')} exit {rt.get('returncode')}"
        lines.append(f"| {d['minute'] / 60:.1f} | {d['drift']} | {', '.join(d['drifted_detectors']) or '—'}"
                     f" | {rt_text} | {d['seconds']:.0f} |")
    lines += ["", "## Canaries", "", "| canary | challenger | outcome | steps (%) | windows | "
              "start → decided (h) | last reasons |", "|---|---|---|---|---:|---|---|"]
    for c in r["canaries"]:
        lines.append(f"| {c.get('label', c['kind'])} | {c['version']} | {c['outcome']} | "
                     f"{' → '.join(f'{x:g}' for x in c['steps'])} | {c['windows']} | "
                     f"{c['start_minute'] / 60:.1f} → {c['decided_minute'] / 60:.2f} | "
                     f"{'; '.join(c['last_reasons'])} |")
    lines += ["", "## /recommend through the router", "",
              f"{a['requests']:,} requests, {a['failed']:,} failed: availability "
              f"{_pct(a['success_rate'])} (worst simulated hour {_pct(a['worst_hour_success_rate'])}); "
              f"p50 {a['p50_ms']:.0f} ms, p99 {a['p99_ms']:.0f} ms, {a['over_600ms']} at or over "
              "600 ms.", "",
              f"## Watch-through (≥ {DEFAULT_MIN_MINUTES} min of a listed movie within "
              f"{WINDOW_MINUTES} min), whole loop", "",
              "| arm / variant | requests | watch-through | 95 % CI |", "|---|---:|---:|---|"]
    for arm, w in sorted(r["watch_through"].items()):
        lines.append(f"| {arm} | {w['requests']:,} | {_pct(w['watch_through'])} | "
                     f"{_pct(w['ci95'][0])} – {_pct(w['ci95'][1])} |")
    pivot = hourly.pivot(index="bucket", columns="arm", values="mean")
    counts = hourly.pivot(index="bucket", columns="arm", values="count")
    lines += ["", f"Per simulated hour (watch-through, matured requests; fewer than {MIN_BUCKET}: —):",
              "",
              "| hour | " + " | ".join(pivot.columns) + " |", "|---:|" + "---:|" * len(pivot.columns)]
    for hour, row in pivot.iterrows():
        cells = [f"{_pct(row[c])} ({int(counts.loc[hour, c])})"
                 if row[c] == row[c] and counts.loc[hour, c] >= MIN_BUCKET else "—"
                 for c in pivot.columns]
        if all(c == "—" for c in cells):
            continue
        lines.append(f"| {hour} | " + " | ".join(cells) + " |")
    rec = r.get("recovery") or {}
    if rec.get("pre_drift_ratio") is not None:
        lines += ["", "## Recovery after the drift (issue 22)", "",
                  f"Champion / oracle before the drift: **{rec['pre_drift_ratio']:.3f}** (hours "
                  f"{', '.join(map(str, rec['pre_drift_hours']))}). Retrains after it: "
                  + "; ".join(f"{t['version']} ({t['trigger']}, at {t['minute'] / 60:.1f} h, "
                              f"half-life {_hours(t.get('half_life_h'))}, users' own "
                              f"{_hours(t.get('user_half_life_h'))})"
                              for t in rec["retrains_after_drift"]) + ".", "",
                  "| hour | model | serving as | ratio to the oracle |", "|---:|---|---|---:|"]
        lines += [f"| {x['hour']} | {x['version']} | {x['arm']} | {x['ratio']:.3f} |"
                  for x in rec.get("after_retrain", [])]
        lines += [""] + [f"- {b['version']} ({b['trigger']}{', promoted' if b['promoted'] else ''}"
                         f"): {b['ratio']:.3f} over {b['hours']} h = {b['share_of_pre_drift']:.0%}"
                         " of the pre-drift ratio" for b in rec.get("by_retrain", [])]
        if "after_retrain_ratio" in rec:
            lines += ["", f"Judged on {rec['judged_version']} (the newest of the two retrains "
                      f"promoted): {rec['after_retrain_ratio']:.3f} = "
                      f"**{rec['share_of_pre_drift']:.0%}** of the pre-drift ratio (target ≥ 90 %)."]
    if "prometheus" in r:
        lines += ["", "## Prometheus", "", "```", json.dumps(r["prometheus"], indent=1, default=str),
                  "```"]
    lines += ["", f"Timings (s): {r['timings_s']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo.soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SoakSettings()
    ap.add_argument("--users", type=int, default=d.users)
    ap.add_argument("--hours", type=float, default=d.live_minutes / 60,
                    help="simulated hours of closed loop (runs on, capped, to finish the canaries)")
    ap.add_argument("--history-hours", type=float, default=d.history_minutes / 60)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 1,500 users, 5 h history, 6 h loop, shorter canary windows")
    ap.add_argument("--no-publish", action="store_true",
                    help="do not copy the plot and the report into docs/")
    args = ap.parse_args(argv)
    s = SoakSettings(users=args.users, seed=args.seed, history_minutes=int(args.history_hours * 60),
                     live_minutes=int(args.hours * 60), publish=not args.no_publish)
    if args.quick:
        s.users, s.history_minutes, s.live_minutes = 1_500, 300, 360
        s.segment_minutes, s.retrain_every, s.drift_at = 30, 120, 150
        s.drift_check_every, s.drift_window_minutes, s.canary_window_s = 30, 60, 15
        s.drift_warmup_minutes = 0
        s.publish = False  # docs/ holds the figures of a full run
    if args.run_dir is not None:
        s.run_dir = args.run_dir
    s.live_minutes -= s.live_minutes % s.segment_minutes
    console = Console()
    console.print(f"[bold]movierec soak[/] — run directory {s.run_dir}")
    soak = Soak(s, console)
    p = soak.p

    def stages() -> dict[str, Any]:
        p.bring_up()
        soak.trainings.append({"minute": 0, "trigger": "first",
                               "version": p.registry_summary()["champion"]})
        soak.run_loop()
        p.wait_ingested()
        p.status.stage("report")
        return soak.report()

    report = run_until_report(console, stages, soak.close)
    if report is None:
        return 130
    console.print(Markdown((p.run_dir / "report.md").read_text()))
    console.print(f"report: {p.run_dir / 'report.md'} (json beside it), plot {report['plot']}")
    return 0 if report["events"]["reconciled"] else 1


if __name__ == "__main__":
    sys.exit(main())
