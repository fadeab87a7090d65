"""The main run: snapshot → interactions → temporal split → candidates → evaluation →
report → bundle → registry. I/O (lake, registry, files, clock) is passed in at the edge."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from omegaconf import DictConfig, OmegaConf

from movierec_core.erasure import drop_erased, read_ledger
from movierec_core.models import (
    ColdStartModel,
    ConfidenceWeights,
    Recommender,
    age_band,
    make_model,
    save_bundle,
)
from movierec_core.models.factor import FactorModel
from movierec_core.models.ranker import Ranker
from movierec_core.models.retrieval import RetrievalConfig, build_for_bundle
from movierec_core.registry import CHALLENGER, CHAMPION, FileRegistry
from movierec_core.snapshot import list_snapshots, load_snapshot, read_manifest
from trainer.data import (
    InteractionMatrix,
    TrainerInputError,
    aggregate_pairs,
    decayed,
    events_from_tables,
    filter_min_counts,
    item_costs,
    movie_side,
    user_side,
)
from trainer.evaluation import (
    per_user_metrics,
    split_time_at_quantile,
    summarise,
    temporal_split,
)
from trainer.ranker import second_stage
from trainer.report import write_report

log = logging.getLogger("trainer")
MODEL_CONFIG_DIR = Path(__file__).resolve().parents[1] / "hydra_configs" / "model"
PERSONALISED = ("als", "bpr", "ease", "itemknn")


@dataclass
class RunResult:
    version: str
    model_type: str
    run_dir: Path
    bundle_dir: Path
    metrics: dict[str, Any]
    aliases: tuple[str, ...]
    duration_s: float


def candidate_config(name: str, model_cfg: Any) -> dict[str, Any]:
    """``hydra_configs/model/<name>.yaml`` with the composed ``model`` group applied on top when
    it configures the same model (so ``model.factors=32`` tunes the ALS candidate)."""
    path = MODEL_CONFIG_DIR / f"{name}.yaml"
    base: dict[str, Any] = {"name": name}
    if path.is_file():
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
        base.update({k: v for k, v in raw.items() if k != "defaults"})
    mc = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg or {})
    if mc.get("name") == name:
        params = mc.pop("params", {}) or {}
        base.update(mc)
        base.update(params)
    return base


def code_version(configured: str = "") -> str:
    if configured:
        return configured
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_snapshot(lake_root: str, snapshot: str) -> str:
    if snapshot and snapshot != "latest":
        return snapshot
    ids = list_snapshots(lake_root)
    if not ids:
        raise TrainerInputError(f"no snapshots in {lake_root}/_snapshots: create one with "
                                "`python -m ingestor snapshot` first")
    return ids[-1]


def _time_it(fn, *args) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure_inference(model: Recommender, rows: np.ndarray, k: int) -> dict[str, float]:
    """ms per user: one batched call over ``rows``, and single calls over the first 50."""
    if rows.size == 0:
        return {"batch_ms_per_user": 0.0, "single_ms_per_user": 0.0}
    batch = rows[:2000]
    _, t_batch = _time_it(model.recommend_batch, batch, k)
    single = rows[:50]
    t0 = time.perf_counter()
    for r in single:
        model.recommend(int(r), k)
    t_single = time.perf_counter() - t0
    return {"batch_ms_per_user": round(1000 * t_batch / batch.size, 4),
            "single_ms_per_user": round(1000 * t_single / single.size, 4)}


def _segments_for(user_ids: np.ndarray, users: pd.DataFrame) -> list[str | None]:
    if users.empty:
        return [None] * user_ids.size
    seg = users["segment"].reindex(user_ids)
    return [s if isinstance(s, str) else None for s in seg]


class Evaluator:
    """Warm-user metrics (overall, light/heavy, demographic groups) on the test events."""

    def __init__(self, train: InteractionMatrix, test_pairs: pd.DataFrame, users: pd.DataFrame,
                 ks: list[int], light_max: int, max_users: int, seed: int) -> None:
        self.train, self.ks = train, ks
        test_rows = train.rows_of(test_pairs["user_id"].to_numpy(np.int64))
        cols = train.cols_of(test_pairs["movie_id"].astype(str).to_numpy())
        warm = test_pairs[test_rows >= 0].assign(row=test_rows[test_rows >= 0],
                                                 col=cols[test_rows >= 0])
        # relevant = items first engaged after T (pairs already seen before T were removed);
        # items unknown before T stay relevant (they count as misses: no model can rank them)
        rel = warm.groupby("row")["col"].apply(list)
        rows = rel.index.to_numpy(np.int64)
        if rows.size > max_users:
            rows = np.sort(np.random.default_rng(seed).choice(rows, max_users, replace=False))
        self.rows = rows
        self.relevant = [[c for c in rel[r]] for r in rows]
        counts = np.diff(train.matrix.indptr)[rows]
        uid = train.user_ids[rows]
        self.groups: dict[str, np.ndarray] = {
            "light": counts <= light_max, "heavy": counts > light_max}
        if not users.empty:
            demo = users.reindex(uid)
            bands = np.array([age_band(a) for a in demo["age"]])
            genders = demo["gender"].fillna("?").astype(str).str.upper().str[:1].to_numpy()
            for b in sorted(set(bands)):
                self.groups[f"age {b}"] = bands == b
            for g in sorted(set(genders)):
                self.groups[f"gender {g}"] = genders == g
        self.new_users = int(test_pairs.loc[test_rows < 0, "user_id"].nunique())

    def evaluate(self, model: Recommender) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        kmax = max(self.ks)
        if self.rows.size == 0:
            return {"users": 0}, {}
        recs = np.vstack([model.recommend_batch(self.rows[i:i + 2000], kmax)
                          for i in range(0, self.rows.size, 2000)])
        n = self.train.matrix.shape[1]
        per_user = {k: per_user_metrics(recs, self.relevant, k) for k in self.ks}
        overall = summarise(recs, self.relevant, self.ks, n, per_user=per_user)
        groups = {g: summarise(recs, self.relevant, self.ks, n, mask, per_user=per_user)
                  for g, mask in self.groups.items() if mask.any()}
        return overall, groups


def evaluate_cold_start(train: InteractionMatrix, test_pairs: pd.DataFrame, users: pd.DataFrame,
                        segments: list[str | None], ks: list[int], cfg: Any) -> dict[str, Any]:
    """Users first seen after T, ranked by the cold-start model (segment popularity) vs plain
    popularity — both fitted on training events only."""
    rows = train.rows_of(test_pairs["user_id"].to_numpy(np.int64))
    new = test_pairs[rows < 0]
    if new.empty:
        return {"users": 0}
    cols = train.cols_of(new["movie_id"].astype(str).to_numpy())
    rel = new.assign(col=cols).groupby("user_id")["col"].apply(list)
    cold = ColdStartModel(list_size=max(ks + [cfg.cold_start_list_size]),
                          min_users=cfg.cold_start_min_users).fit(train.matrix, segments)
    kmax = max(ks)
    out: dict[str, Any] = {}
    for name, seg_aware in (("cold_start", True), ("popularity", False)):
        recs = np.full((len(rel), kmax), -1, dtype=np.int64)
        for n, uid in enumerate(rel.index):
            if seg_aware and not users.empty and uid in users.index:
                u = users.loc[uid]
                items = cold.items_for(u["age"], u["gender"], u["occupation"], kmax)
            else:
                items = cold.items_for(None, None, None, kmax)
            recs[n, : len(items)] = items
        out[name] = summarise(recs, list(rel.values), ks, train.matrix.shape[1])
    return out


def _candidate_label(name: str, half_life_h: float, user_half_life_h: float = 0.0) -> str:
    label = name if not half_life_h else f"{name}@{half_life_h:g}h"
    return label if not user_half_life_h else f"{label}/user@{user_half_life_h:g}h"


def fit_candidate(name: str, cfg: dict[str, Any], matrix, segments, tcfg) -> tuple[Recommender, float]:
    model = make_model(cfg, num_threads=tcfg.num_threads)
    t = time.perf_counter()
    if name == "cold_start":
        model.fit(matrix, segments)
    else:
        model.fit(matrix)
    return model, time.perf_counter() - t


def run(cfg: DictConfig, registry: FileRegistry | None = None) -> RunResult:
    """Train, evaluate, report, register. Raises TrainerInputError on unusable input."""
    from trainer.tuning import tune_candidates

    t_start = time.perf_counter()
    tc = cfg.trainer
    timings: dict[str, float] = {}
    lake_root = str(cfg.data.lake_root)
    snapshot_id = resolve_snapshot(lake_root, str(tc.snapshot))
    snap_manifest = read_manifest(lake_root, snapshot_id)
    tables, timings["load_snapshot_s"] = _time_it(load_snapshot, lake_root, snapshot_id)
    erased = read_ledger(lake_root)
    if erased:  # users erased after the snapshot was taken (ingestor/erase.py) are left out
        tables = {name: drop_erased(table, erased) for name, table in tables.items()}
    scale = int(tc.rating_scale_max or cfg.data.rating_scale_max)
    weights = ConfidenceWeights(watch=tc.confidence.watch, rating=tc.confidence.rating,
                                scale_max=scale, dislike_below=tc.confidence.dislike_below,
                                default_runtime=tc.confidence.default_runtime)
    t = time.perf_counter()
    events, quality = events_from_tables(tables, scale)
    movies, users = movie_side(tables), user_side(tables)
    timings["events_s"] = time.perf_counter() - t

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    run_dir = Path(tc.output_dir) / f"{stamp}-{snapshot_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    candidates = [str(c) for c in tc.candidates]
    if not candidates:
        raise TrainerInputError("trainer.candidates is empty")
    configs = {name: candidate_config(name, cfg.model) for name in candidates}
    comparison: dict[str, Any] = {"snapshot": snapshot_id, "select_metric": tc.select_metric,
                                  "rows": [], "subpopulations": {}, "data_quality": quality}
    selected = candidates[0]
    half_lives = [float(h) for h in tc.recency.half_lives_h] or [0.0]
    user_half_lives = [float(h) for h in tc.recency.user_half_lives_h] or [0.0]
    selected_half_life, selected_user_half_life = half_lives[0], 0.0
    eval_metrics: dict[str, Any] = {}
    if tc.evaluate:
        t = time.perf_counter()
        split_t = (pd.Timestamp(tc.split_time) if tc.split_time
                   else split_time_at_quantile(events["time"], tc.test_fraction))
        split = temporal_split(events, split_t)
        train_pairs = filter_min_counts(aggregate_pairs(split.train, movies, weights),
                                        tc.min_user_interactions, tc.min_item_interactions)
        if train_pairs.empty:
            raise TrainerInputError(f"no training interactions before the split time {split_t}: "
                                    "set trainer.split_time later or trainer.test_fraction lower")
        test_pairs = aggregate_pairs(split.test, movies, weights)
        seen = train_pairs.set_index(["user_id", "movie_id"]).index
        test_pairs = test_pairs[~test_pairs.set_index(["user_id", "movie_id"]).index.isin(seen)]
        train = InteractionMatrix.from_pairs(train_pairs)
        segments = _segments_for(train.user_ids, users)
        evaluator = Evaluator(train, test_pairs, users, list(tc.ks), tc.light_max_interactions,
                              tc.eval_max_users, tc.seed)
        timings["split_s"] = time.perf_counter() - t
        comparison["split"] = {"time": str(split_t), "train_events": len(split.train),
                               "test_events": len(split.test), "train_users": int(train.user_ids.size),
                               "train_items": int(train.item_ids.size),
                               "warm_eval_users": int(evaluator.rows.size),
                               "new_users": evaluator.new_users}
        if tc.tune.enabled:
            t = time.perf_counter()
            tuned = tune_candidates(split.train, movies, weights, configs, tc)
            timings["tune_s"] = time.perf_counter() - t
            comparison["tuning"] = tuned
            for name, res in tuned.items():
                configs[name] = {**configs[name], **res["best_params"]}
        best, trained = -np.inf, []
        # the same pairs, their confidences weighed by recency as of the split time
        recency_rows = {h: train.matrix if not h else InteractionMatrix.from_pairs(
            decayed(train_pairs, h, split_t)).matrix for h in {*half_lives, *user_half_lives}}
        for half_life in half_lives:
            for name in candidates:
                label = _candidate_label(name, half_life)
                try:
                    model, fit_s = fit_candidate(name, configs[name], recency_rows[half_life],
                                                 segments, tc)
                except (ValueError, MemoryError) as exc:
                    log.warning("candidate %s skipped: %s", label, exc)
                    comparison["rows"].append({"model": label, "error": str(exc)})
                    continue
                cost = measure_inference(model, evaluator.rows, max(tc.ks))
                mdir = run_dir / "candidates" / label
                model.save(mdir)
                common = {"fit_s": round(fit_s, 4), **cost, "memory_bytes": model.memory_bytes(),
                          "disk_bytes": _dir_bytes(mdir), "config": configs[name],
                          "half_life_h": half_life}
                shutil.rmtree(mdir, ignore_errors=True)
                fitted_users = getattr(model, "user_factors", None)
                for user_half_life in user_half_lives:
                    if user_half_life and not isinstance(model, FactorModel):
                        continue  # per-user recency re-derives user vectors: factor models only
                    if isinstance(model, FactorModel):  # each user's vector, from their rows
                        model.user_factors = fitted_users
                        if user_half_life:
                            model.refold_users(recency_rows[user_half_life])
                    label = _candidate_label(name, half_life, user_half_life)
                    overall, groups = evaluator.evaluate(model)
                    comparison["rows"].append({"model": label, **overall, **common,
                                               "user_half_life_h": user_half_life})
                    comparison["subpopulations"][label] = groups
                    trained.append((name, half_life, user_half_life))
                    score = overall.get(tc.select_metric, -np.inf)
                    log.info("candidate %-22s %s=%.4f fit %.2fs", label, tc.select_metric,
                             score, fit_s)
                    if score > best:
                        best, selected = score, name
                        selected_half_life, selected_user_half_life = half_life, user_half_life
                        eval_metrics = {**overall, "subpopulations": groups}
        shutil.rmtree(run_dir / "candidates", ignore_errors=True)
        comparison["cold_start"] = evaluate_cold_start(train, test_pairs, users, segments,
                                                       list(tc.ks), tc)
        timings["candidates_s"] = time.perf_counter() - t
        if not trained:
            raise TrainerInputError("every candidate failed to train (see the log)")
        if best == -np.inf:  # no warm test user (e.g. every test user is new): cannot rank
            selected, selected_half_life, selected_user_half_life = trained[0]
            log.warning("no warm users to evaluate on; registering the first candidate %s",
                        selected)
    # user vectors (per-user recency, the ranker's first stage): factor models only
    selected_is_factor = isinstance(make_model(configs[selected]), FactorModel)
    if not tc.evaluate and user_half_lives[0] and selected_is_factor:
        selected_user_half_life = user_half_lives[0]  # no evaluation: the first one configured
    comparison["selected"] = _candidate_label(selected, selected_half_life,
                                              selected_user_half_life)

    # the registered model: the selected configuration, fitted on every event (or on train only)
    t = time.perf_counter()
    raw_pairs = filter_min_counts(aggregate_pairs(events, movies, weights),
                                  tc.min_user_interactions, tc.min_item_interactions)
    all_pairs = decayed(raw_pairs, selected_half_life)
    if all_pairs.empty:
        raise TrainerInputError(f"snapshot {snapshot_id}: no interaction with positive confidence")
    final = InteractionMatrix.from_pairs(all_pairs)
    # per-user recency: the users' rows (their vectors, and what the server folds in beside
    # the online store's events) weighed by the user half-life; the same pairs, the same order
    user_rows = (InteractionMatrix.from_pairs(decayed(raw_pairs, selected_user_half_life))
                 if selected_user_half_life else None)
    timings["final_matrix_s"] = time.perf_counter() - t
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["selected_model"] = configs[selected]
    manifest = {
        "model_name": tc.model_name,
        "snapshot": {"id": snapshot_id, "hash": snap_manifest.get("content_hash"),
                     "time_range": snap_manifest.get("time_range")},
        # its user ids are pseudonyms under this key (None: raw ids); the model server
        # pseudonymises a request with it (movierec_core/pseudonym.py)
        "pseudonym_key_id": snap_manifest.get("pseudonym_key_id"),
        # how time was weighed (chosen by the temporal evaluation among half_lives)
        "recency": {"half_life_h": selected_half_life, "half_lives_h": half_lives,
                    "user_half_life_h": selected_user_half_life,
                    "user_half_lives_h": user_half_lives},
        "code_version": code_version(tc.code_version), "config": resolved,
        "metrics": {"warm": {k: v for k, v in eval_metrics.items() if k != "subpopulations"},
                    "cold_start": comparison.get("cold_start", {}),
                    **{k: v for k, v in eval_metrics.items() if k != "subpopulations"}},
        "data_quality": quality, "selected_from": candidates,
    }
    runtimes = (movies["runtime"].reindex(final.item_ids).to_numpy(np.float32) if len(movies)
                else None)
    costs = item_costs(final.item_ids, movies)
    ranker = None
    if tc.ranker.enabled:
        t = time.perf_counter()
        if not selected_is_factor:  # before any fit
            report: dict[str, Any] = {
                "kept": False, "reason": f"the ranker's first stage must be a factor model "
                                         f"(als, bpr), not {selected}"}
        else:
            def fit_first_stage(matrix: Any) -> Any:
                return fit_candidate(selected, configs[selected], matrix,
                                     [None] * matrix.shape[0], tc)[0]
            ranker, report = second_stage(
                tables, events, movies, weights, fit_first_stage, selected_half_life,
                final.item_ids, all_pairs, costs, run_dir / "first_stage", tc.ranker, resolved,
                tc.min_user_interactions, tc.min_item_interactions,
                user_half_life_h=selected_user_half_life)
            shutil.rmtree(run_dir / "first_stage", ignore_errors=True)
        timings["ranker_s"] = time.perf_counter() - t
        comparison["ranker"] = report
        manifest["ranker"] = {k: v for k, v in report.items() if k != "position_ctr"}
        log.info("ranker %s: %s", "kept" if ranker is not None else "not kept",
                 report.get("validation_ndcg@20") or report.get("reason"))
    published = fit_and_publish(
        final, _segments_for(final.user_ids, users), configs[selected], tc,
        registry or FileRegistry(cfg.data.registry_root), run_dir / "bundle", manifest,
        costs=costs, timings=timings, runtimes=runtimes, confidence_weights=weights,
        comparison=comparison if tc.evaluate else None,
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True), ranker=ranker,
        user_rows=None if user_rows is None else user_rows.matrix)
    duration = time.perf_counter() - t_start
    (run_dir / "result.txt").write_text(
        f"{tc.model_name} {published.version or 'unregistered'} {selected} {duration:.2f}s\n")
    return RunResult(published.version, published.model_type, run_dir, published.bundle_dir,
                     manifest["metrics"], published.aliases, duration)


@dataclass
class Published:
    version: str
    model_type: str
    bundle_dir: Path
    aliases: tuple[str, ...]
    timings: dict[str, float]


def fit_and_publish(final: InteractionMatrix, segments: list[str | None], model_cfg: dict[str, Any],
                    tc: Any, registry: FileRegistry, bundle_dir: Path, manifest: dict[str, Any],
                    costs: np.ndarray | None = None, timings: dict[str, float] | None = None,
                    comparison: dict[str, Any] | None = None, config_yaml: str = "",
                    runtimes: np.ndarray | None = None,
                    confidence_weights: ConfidenceWeights | None = None,
                    ranker: Ranker | None = None,
                    user_rows: sp.csr_matrix | None = None) -> Published:
    """Fit the production model on ``final``, write the bundle (+ report), register it and move
    ``challenger`` (and ``champion`` when there is none or ``tc.promote``). ``user_rows``
    (per-user recency, factor models): the users' confidences their vectors are folded in from
    and the bundle's rows (the same pairs as ``final``, weighed differently)."""
    timings = dict(timings or {})
    model, timings["final_fit_s"] = fit_candidate(str(model_cfg["name"]), model_cfg, final.matrix,
                                                  segments, tc)
    rows = final.matrix
    if user_rows is not None and isinstance(model, FactorModel):
        t = time.perf_counter()
        model.refold_users(user_rows)
        rows = user_rows
        timings["refold_users_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cold = ColdStartModel(list_size=tc.cold_start_list_size,
                          min_users=tc.cold_start_min_users).fit(final.matrix, segments)
    timings["cold_start_fit_s"] = time.perf_counter() - t
    manifest = {**manifest, "model_type": model.model_type,
                "timings": {k: round(v, 4) for k, v in timings.items()}}
    retrieval = None
    if tc.retrieval.enabled and isinstance(model, FactorModel) and final.item_ids.size:
        t = time.perf_counter()
        retrieval = build_for_bundle(model.item_factors, model.user_factors,
                                     RetrievalConfig.from_config(tc.retrieval), seed=int(tc.seed))
        timings["retrieval_index_s"] = time.perf_counter() - t
        manifest = {**manifest, "retrieval": {k: v for k, v in retrieval.meta.items()}}
    manifest = {**manifest, "timings": {k: round(v, 4) for k, v in timings.items()}}
    t = time.perf_counter()
    save_bundle(bundle_dir, model, final.item_ids, final.user_ids, rows, costs=costs,
                cold_start=cold, manifest=manifest, runtimes=runtimes,
                confidence_weights=confidence_weights)
    if retrieval is not None:
        retrieval.save(bundle_dir)
    if ranker is not None:  # the learned second stage and the item table it reads
        ranker.save(bundle_dir)
    if comparison is not None:
        write_report(bundle_dir / "report", comparison, plots=bool(tc.report_plots))
    if config_yaml:
        (bundle_dir / "config.yaml").write_text(config_yaml)
    timings["bundle_s"] = time.perf_counter() - t
    if not tc.register:
        return Published("", model.model_type, bundle_dir, (), timings)
    t = time.perf_counter()
    aliases = [CHALLENGER]
    if tc.promote or registry.get_alias(tc.model_name, CHAMPION) is None:
        aliases.append(CHAMPION)
    version = registry.register(tc.model_name, bundle_dir, aliases=tuple(aliases))
    timings["register_s"] = time.perf_counter() - t
    return Published(version, model.model_type, registry.resolve(tc.model_name, version),
                     tuple(aliases), timings)
