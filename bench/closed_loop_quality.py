"""Closed-loop quality of the trainer's ALS champion, in process (no Kafka, no HTTP).

The demo's loop without the plumbing: the simulator shows popularity lists for ``--history``
simulated minutes; the history lines become lake-shaped tables (watch minutes sessionised by the
ingestor's own ``sessionise``, ratings, movie runtimes and user demographics as the enrichment
tables); the trainer's own functions turn them into the interaction matrix and fit/publish the
model exactly as ``trainer.pipeline.run`` does for the registered model (``aggregate_pairs`` →
``filter_min_counts`` → ``InteractionMatrix`` → ``fit_and_publish``), with the config composed
from ``hydra_configs/trainer.yaml`` plus the given overrides. The published bundle is loaded by
the model server's :class:`model_server.engine.Engine`, which ranks like the server does
(exclude seen, fold in the user's online interactions, cold start by segment).

Then the closed loop: users split by id hash into arms — the engine with fold-in (``als``),
the engine without fold-in (``als_nofold``), the simulator's ``oracle`` and ``popularity`` —
for ``--live`` simulated minutes. Watch-through per arm (≥ 15 minutes of a listed movie within
60 minutes) from the logged lines, counting only requests whose window closed.

    python bench/closed_loop_quality.py              # held-out worlds, the configured model
    python bench/closed_loop_quality.py --quick      # 2,000 users, short, two seeds
    python bench/closed_loop_quality.py --sweep      # tuning: SWEEP below on the tuning seed
    python bench/closed_loop_quality.py --sweep --config "model=als_demo model.alpha=10"

The model's settings (``model=als_demo``) were chosen with ``--sweep`` on the tuning seed
(``demo.platform.TUNING_SEEDS``). Quality is reported on worlds it was not tuned on: the
held-out seeds (``HELD_OUT_SEEDS``, 10,000 users each) and a larger world (30,000 users, a seed
of its own), always with the configured model, never the best of a sweep; mean, standard
deviation, min and max over those worlds. Writes ``bench/results/closed_loop_quality.json``
(the sweep: ``closed_loop_sweep.json``, not a quality figure).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from ingestor.lake import sessionise  # noqa: E402
from model_server.engine import ColdStart, Engine  # noqa: E402
from movierec_core import lake  # noqa: E402
from movierec_core.batch import parse_lines  # noqa: E402
from movierec_core.events import (  # noqa: E402
    Rating,
    RecommendationRequest,
    Rejection,
    WatchMinute,
)
from movierec_core.models import ConfidenceWeights  # noqa: E402
from movierec_core.registry import FileRegistry  # noqa: E402
from movierec_core.watch_through import frames_from_events, watch_through  # noqa: E402
from simulator.recommenders import Response, SplitRecommender, builtin  # noqa: E402
from simulator.runner import Simulator  # noqa: E402
from simulator.sinks import MemorySink  # noqa: E402
from trainer.cli import load_config  # noqa: E402
from trainer.data import (  # noqa: E402
    InteractionMatrix,
    aggregate_pairs,
    events_from_tables,
    filter_min_counts,
    item_costs,
    movie_side,
    user_side,
)
from trainer.pipeline import _segments_for, candidate_config, fit_and_publish  # noqa: E402

MIN_MINUTES, WINDOW_MINUTES = 15, 60
SESSION_GAP_S = 1800.0  # the ingestor's default session_gap_s
# the demo's champion settings (hydra_configs/model/als_demo.yaml + these overrides)
DEMO_OVERRIDES = ["model=als_demo"]
DEMO_HISTORY = 900


# --------------------------------------------------------------------------- history → tables
def fast_events(lines: list[bytes]) -> tuple[pa.Table, list[Any]]:
    """The project's batch parser (``movierec_core.batch``, equal to ``parse`` line by line):
    every watch minute in one table (time, user_id, movie_id, minute), and the other valid
    events."""
    batch = parse_lines(lines)
    others, slow = [], []
    for _i, e in batch.others:
        if isinstance(e, WatchMinute):
            slow.append(e)
        elif not isinstance(e, Rejection):
            others.append(e)
    minutes = batch.watch
    if slow:
        minutes = pa.concat_tables([minutes, pa.table({
            "time": pa.array([e.time for e in slow], pa.timestamp("us")),
            "user_id": pa.array([e.user_id for e in slow], pa.int64()),
            "movie_id": pa.array([e.movie_id for e in slow], pa.string()),
            "minute": pa.array([e.minute for e in slow], pa.int32())}, schema=minutes.schema)])
    return minutes, others


def history_tables(lines: list[bytes], sim: Simulator) -> dict[str, pa.Table]:
    """Lake-shaped tables from the history lines, like the ingestor lands them."""
    minutes, others = fast_events(list(dict.fromkeys(lines)))
    minutes = minutes.select(["user_id", "movie_id", "time", "minute"])
    ratings = [e for e in others if isinstance(e, Rating)]
    rt = pa.table({"user_id": pa.array([e.user_id for e in ratings], pa.int64()),
                   "movie_id": pa.array([e.movie_id for e in ratings], pa.string()),
                   "time": pa.array([e.time for e in ratings], lake.TS),
                   "stars": pa.array([e.stars for e in ratings], pa.int16())})
    w = sim.world
    now = datetime(2030, 1, 1)
    movies = pa.table({"movie_id": pa.array(list(w.movie_ids), pa.string()),
                       "runtime": pa.array(w.runtime.astype(np.int32)),
                       "cost": pa.array(w.cost.astype(np.float64)),
                       "fetched_at": pa.array([now] * w.n_movies, lake.TS)})
    recs = [w.user_record(u) for u in range(w.n_users)]
    users = pa.table({"user_id": pa.array([r["user_id"] for r in recs], pa.int64()),
                      "age": pa.array([r["age"] for r in recs], pa.int16()),
                      "gender": pa.array([r["gender"] for r in recs], pa.string()),
                      "occupation": pa.array([r["occupation"] for r in recs], pa.string()),
                      "fetched_at": pa.array([now] * len(recs), lake.TS)})
    return {lake.WATCH_SESSIONS: sessionise(minutes, SESSION_GAP_S), lake.RATINGS: rt,
            lake.MOVIES: movies, lake.USERS: users}


# --------------------------------------------------------------------------- training
def weights_of(tc: Any, scale: int) -> ConfidenceWeights:
    """The trainer's ConfidenceWeights from ``trainer.confidence`` (every field it has)."""
    given = {k: v for k, v in dict(tc.confidence).items()
             if k in ConfidenceWeights.__dataclass_fields__}
    return ConfidenceWeights(**{**given, "scale_max": scale})


def train(tables: dict[str, pa.Table], overrides: list[str], workdir: Path) -> tuple[Engine, dict]:
    """What ``trainer.pipeline.run`` does for the registered model, on in-memory tables."""
    cfg = load_config([f"data.registry_root={workdir / 'registry'}",
                              f"trainer.output_dir={workdir / 'runs'}", "trainer.report_plots=false",
                              *overrides])
    tc = cfg.trainer
    t0 = time.perf_counter()
    scale = int(tc.rating_scale_max or cfg.data.rating_scale_max)
    weights = weights_of(tc, scale)
    events, _ = events_from_tables(tables, scale)
    movies, users = movie_side(tables), user_side(tables)
    pairs = filter_min_counts(aggregate_pairs(events, movies, weights),
                              tc.min_user_interactions, tc.min_item_interactions)
    final = InteractionMatrix.from_pairs(pairs)
    model_cfg = candidate_config("als", cfg.model)
    runtimes = movies["runtime"].reindex(final.item_ids).to_numpy(np.float32)
    from omegaconf import OmegaConf
    manifest = {"model_name": tc.model_name, "snapshot": {"id": "bench"},
                "config": OmegaConf.to_container(cfg, resolve=True)}
    pub = fit_and_publish(final, _segments_for(final.user_ids, users), model_cfg, tc,
                          FileRegistry(cfg.data.registry_root), workdir / "bundle", manifest,
                          costs=item_costs(final.item_ids, movies), runtimes=runtimes,
                          confidence_weights=weights)
    engine = Engine.load(pub.bundle_dir, rating_scale_max=scale)
    info = {"train_s": round(time.perf_counter() - t0, 2), "users": int(final.user_ids.size),
            "items": int(final.item_ids.size), "interactions": int(final.matrix.nnz),
            "model": {k: v for k, v in model_cfg.items() if k != "params"},
            "confidence": {k: getattr(weights, k) for k in ConfidenceWeights.__dataclass_fields__}}
    return engine, info


# --------------------------------------------------------------------------- the serving arm
@dataclass(frozen=True)
class Interaction:  # what the online store hands the server
    movie_id: str
    minutes: float
    stars: float | None


class OnlineState:
    """The online store, in process: per user, distinct minutes watched and the latest stars of
    every movie (history + loop), from the lines as they are produced."""

    def __init__(self, history: dict[str, pa.Table]) -> None:
        self.minutes: dict[int, dict[str, set]] = defaultdict(lambda: defaultdict(set))
        self.stars: dict[int, dict[str, int]] = defaultdict(dict)
        self.base: dict[int, dict[str, int]] = defaultdict(dict)
        s = history[lake.WATCH_SESSIONS].group_by(["user_id", "movie_id"]).aggregate(
            [("minutes_watched", "sum")])
        for u, m, n in zip(s.column("user_id").to_pylist(), s.column("movie_id").to_pylist(),
                           s.column("minutes_watched_sum").to_pylist(), strict=True):
            self.base[u][m] = n
        r = history[lake.RATINGS]
        for u, m, st in zip(r.column("user_id").to_pylist(), r.column("movie_id").to_pylist(),
                            r.column("stars").to_pylist(), strict=True):
            self.stars[u][m] = st

    def send(self, lines: list[bytes]) -> None:
        wm, others = fast_events(lines)
        for u, m, n in zip(wm.column("user_id").to_pylist(), wm.column("movie_id").to_pylist(),
                           wm.column("minute").to_pylist(), strict=True):
            self.minutes[u][m].add(n)
        for e in others:
            if isinstance(e, Rating):
                self.stars[e.user_id][e.movie_id] = e.stars

    def interactions(self, user_id: int) -> list[Interaction]:
        loop = self.minutes.get(user_id, {})
        base = self.base.get(user_id, {})
        stars = self.stars.get(user_id, {})
        movies = set(loop) | set(base) | set(stars)
        return [Interaction(m, float(base.get(m, 0) + len(loop.get(m, ()))), stars.get(m))
                for m in movies]


class EngineArm:
    """Ranks like the model server: exclude seen, fold in online interactions, cold start."""

    def __init__(self, engine: Engine, state: OnlineState, sim: Simulator, server: str,
                 fold_in: bool = True, k: int = 20) -> None:
        self.engine, self.state, self.sim, self.server = engine, state, sim, server
        self.fold_in, self.k = fold_in, k
        self.sources: dict[str, int] = defaultdict(int)

    def recommend(self, user_ids: list[int]) -> list[Response]:
        out = []
        for u in user_ids:
            answer = self.engine.rank(int(u), self.state.interactions(int(u)), self.k,
                                      fold_in=self.fold_in)
            if isinstance(answer, ColdStart):
                rec = self.sim.world.user_record(int(u)) or {}
                answer = self.engine.cold_start((rec.get("age"), rec.get("gender"),
                                                 rec.get("occupation")), self.k, answer)
            self.sources[answer.source] += 1
            out.append(Response(200, tuple(answer.items), "", 5))
        return out


class TeeState:
    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def send(self, lines: list[bytes]) -> None:
        for s in self.sinks:
            s.send(lines)

    def flush(self) -> None:
        pass


def fork(sim: Simulator) -> Simulator:
    """An independent copy of a simulator's state (history run once, many loops)."""
    twin = copy.copy(sim)
    lock = sim.simulation.__dict__.get("lock")
    if lock is not None:
        sim.simulation.lock = None
    try:
        twin.simulation = copy.deepcopy(sim.simulation)
    finally:
        if lock is not None:
            sim.simulation.lock = lock
    if lock is not None:
        twin.simulation.lock = threading.Lock()
    twin.world = twin.simulation.world
    twin._stop = threading.Event()
    twin._thread, twin.handles, twin._http = None, [], []
    return twin


def loop_watch_through(lines: list[bytes], end: pd.Timestamp) -> pd.DataFrame:
    unique = dict.fromkeys(lines)
    wm, others = fast_events(list(unique))
    requests, _ = frames_from_events(e for e in others if isinstance(e, RecommendationRequest))
    watches = wm.select(["time", "user_id", "movie_id"]).to_pandas()
    closed = requests[requests["time"] + pd.Timedelta(minutes=WINDOW_MINUTES) <= end]
    return watch_through(closed, watches, MIN_MINUTES, WINDOW_MINUTES, by="server")


def closed_loop(sim: Simulator, engine: Engine, state: OnlineState, minutes: int,
                shares: dict[str, float]) -> tuple[dict[str, Any], dict[str, int]]:
    arms = {"als": EngineArm(engine, state, sim, "als", fold_in=True),
            "als_nofold": EngineArm(engine, state, sim, "als_nofold", fold_in=False)}
    built = []
    for name, w in shares.items():
        if w <= 0:
            continue
        rec = arms.get(name) or builtin(name, sim.world, int(sim.cfg.behaviour.k),
                                        sim.simulation.seen_in_thread, int(sim.cfg.seed))
        built.append((w, rec))
    sim.simulation.recommender = SplitRecommender(built, seed=int(sim.cfg.seed))
    kept = MemorySink()
    sim.run(minutes, sink=TeeState(kept, state), speed=0)
    end = pd.Timestamp(sim.simulation.start) + pd.Timedelta(minutes=int(sim.simulation.tick))
    wt = loop_watch_through(kept.lines, end)
    per_arm = {str(k): {"requests": int(r["requests"]), "watch_through": round(float(r["watch_through"]), 4)}
               for k, r in wt.iterrows()}
    return per_arm, {k: dict(a.sources) for k, a in arms.items()}


def ratios(per_arm: dict[str, Any], arm: str = "als") -> dict[str, float]:
    wt = {k: v["watch_through"] for k, v in per_arm.items()}
    out = {}
    for a in ("als", "als_nofold"):
        if a in wt:
            out[f"{a}/oracle"] = round(wt[a] / wt["oracle"], 3)
            out[f"{a}/popularity"] = round(wt[a] / wt["popularity"], 3)
    return out


def use_log_minutes() -> None:
    """Experiment only: the trainer's aggregation and the engine's fold-in both weigh a watch
    by log(1 + minutes) (patched in this process; the platform's rule is unchanged)."""
    import model_server.engine
    import trainer.data
    from movierec_core.models.confidence import confidence as base

    def log_confidence(minutes: Any, runtime: Any, stars: Any, weights: Any = None) -> Any:
        w = weights or ConfidenceWeights()
        m = np.asarray(minutes, dtype=np.float64)
        m = np.where(np.isfinite(m) & (m > 0), m, 0.0)
        rated = base(np.zeros_like(m), runtime, stars, ConfidenceWeights(
            watch=0.0, rating=w.rating, scale_max=w.scale_max, dislike_below=w.dislike_below))
        c = (w.watch * np.log1p(m) + rated).astype(np.float32)
        return float(c) if np.ndim(c) == 0 else c

    trainer.data.confidence = log_confidence
    model_server.engine.confidence = log_confidence


# --------------------------------------------------------------------------- main
def run_one(users: int, history: int, live: int, configs: list[list[str]], seed: int,
            shares: dict[str, float]) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    sim = Simulator.from_overrides([f"world.n_users={users}", f"seed={seed}"])
    sim.use("popularity")
    hist = MemorySink()
    sim.run(history, sink=hist, speed=0)
    t_sim = time.perf_counter() - t0
    tables = history_tables(hist.lines, sim)
    n_lines = len(hist.lines)
    del hist
    t_tables = time.perf_counter() - t0 - t_sim
    print(f"history {history} min: {n_lines:,} lines, simulated {t_sim:.1f}s, tables "
          f"{t_tables:.1f}s, sessions {tables[lake.WATCH_SESSIONS].num_rows:,}", flush=True)
    results = []
    for overrides in configs:
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="clq-") as tmp:
            engine, info = train(tables, overrides, Path(tmp))
            state = OnlineState(tables)
            twin = fork(sim) if len(configs) > 1 else sim
            per_arm, sources = closed_loop(twin, engine, state, live, shares)
        res = {"users": users, "history_minutes": history, "live_minutes": live,
               "world": {k: sim.cfg.world[k] for k in ("latent_dim", "quality_sd", "sharpness",
                                                        "offset", "n_movies")}
               | {"session_rate_per_hour": sim.cfg.behaviour.session_rate_per_hour},
               "overrides": overrides, **info, "arms": per_arm, "ratios": ratios(per_arm),
               "sources": sources, "config_s": round(time.perf_counter() - t1, 1)}
        results.append(res)
        wt = {k: v["watch_through"] for k, v in per_arm.items()}
        print(f"  {' '.join(overrides) or '(defaults)'}: {json.dumps(wt)} {json.dumps(res['ratios'])} "
              f"train {info['train_s']}s, config {res['config_s']}s", flush=True)
    return results


SWEEP = [  # --sweep: the trainer's defaults, an untuned setting, and around the demo's
    [],  # als.yaml: 64 factors, reg 5, alpha 2; fraction-of-runtime confidence
    ["model.factors=16", "model.regularization=0.5", "model.alpha=1"],
    ["model=als_demo", "model.alpha=10"],
    ["model=als_demo"],  # 16 factors, reg 2, alpha 40
    ["model=als_demo", "model.factors=32"],
    ["model=als_demo", "model.regularization=0.1", "model.alpha=50"],
]

LARGER_WORLD_USERS = 30_000  # one held-out world larger than the one tuned on


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation, min and max of each ratio over runs."""
    out = {}
    for key in ("als/oracle", "als/popularity", "als_nofold/oracle"):
        values = [r["ratios"][key] for r in runs if key in r["ratios"]]
        if values:
            out[key] = {"mean": round(float(np.mean(values)), 4),
                        "sd": round(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, 4),
                        "min": round(min(values), 4), "max": round(max(values), 4),
                        "n": len(values)}
    return out


def main(argv: list[str] | None = None) -> int:
    from demo.platform import HELD_OUT_SEEDS, TUNING_SEEDS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2,000 users, shorter history, 2 seeds")
    p.add_argument("--users", type=int)
    p.add_argument("--history", type=int, help="simulated minutes of history")
    p.add_argument("--live", type=int, help="simulated minutes of closed loop")
    p.add_argument("--seeds", type=int, nargs="*", help=f"held-out world seeds (default "
                   f"{' '.join(map(str, HELD_OUT_SEEDS))}; tuning seeds {TUNING_SEEDS} refused)")
    p.add_argument("--sweep", action="store_true",
                   help="tune: the sweep grid on the tuning seed (closed_loop_sweep.json)")
    p.add_argument("--config", action="append", default=None,
                   help="trainer overrides, space separated (repeatable; with --sweep)")
    p.add_argument("--log-minutes", action="store_true",
                   help="experiment: watch signal log(1+minutes) instead of min(minutes/runtime, 1)")
    a = p.parse_args(argv)
    if a.log_minutes:
        use_log_minutes()
    users = a.users or (2000 if a.quick else 10_000)
    history = a.history or (600 if a.quick else DEMO_HISTORY)
    live = a.live or (150 if a.quick else 180)
    shares = {"als": 0.35, "als_nofold": 0.25, "oracle": 0.2, "popularity": 0.2}
    t0 = time.perf_counter()
    if a.sweep:  # tuning: never published, never judged
        configs = [c.split() for c in a.config] if a.config else SWEEP
        runs = run_one(users, history, live, configs, TUNING_SEEDS[0], shares)
        path = write_result("closed_loop_sweep", {
            "seed": TUNING_SEEDS[0], "runs": runs, "wall_s": round(time.perf_counter() - t0, 1),
            "note": "tuning runs on the tuning seed: not a quality figure"}, {}, quick=a.quick)
        print(f"wall {time.perf_counter() - t0:.0f}s → {path}")
        return 0
    seeds = a.seeds or list(HELD_OUT_SEEDS[:2] if a.quick else HELD_OUT_SEEDS)
    tuned = sorted(set(seeds) & set(TUNING_SEEDS))
    if tuned:
        print(f"seeds {tuned} are the tuning seeds: quality is reported on held-out worlds only",
              file=sys.stderr)
        return 2
    worlds = [(users, seed) for seed in seeds]
    if not a.quick and not a.users:
        worlds.append((LARGER_WORLD_USERS, max(seeds) + 101))
    runs = []
    for n_users, seed in worlds:  # the configured model, never the best of a sweep
        run = run_one(n_users, history, live, [DEMO_OVERRIDES], seed, shares)[0]
        run["seed"] = seed
        runs.append(run)
    summary = summarise(runs)
    targets = {"mean als/oracle over held-out worlds >= 0.6": summary["als/oracle"]["mean"] >= 0.6,
               "mean als/popularity over held-out worlds >= 3":
                   summary["als/popularity"]["mean"] >= 3.0,
               "every held-out world als/oracle >= 0.6": summary["als/oracle"]["min"] >= 0.6}
    path = write_result("closed_loop_quality", {
        "configured_model": DEMO_OVERRIDES, "tuning_seeds": list(TUNING_SEEDS),
        "held_out": [{"seed": seed, "users": n} for n, seed in worlds],
        "summary": summary, "runs": runs, "history_minutes": history, "live_minutes": live,
        "window_minutes": WINDOW_MINUTES, "min_minutes": MIN_MINUTES, "arm_shares": shares,
        "wall_s": round(time.perf_counter() - t0, 1)}, targets, quick=a.quick)
    print(f"held-out worlds {worlds}: {json.dumps(summary)}")
    print(f"wall {time.perf_counter() - t0:.0f}s → {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
