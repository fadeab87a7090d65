"""Candidate retrieval: the bundle's ANN index against exact scoring, same model, same users.

    .venv/bin/python bench/retrieval.py            # 20,000 movies, 1,000,000 users
    .venv/bin/python bench/retrieval.py --quick    # 5,000 movies, 20,000 users

The model: ALS (64 factors, the trainer's model class) fitted on histories drawn from the
simulator's world (each of 20,000 users watches 40 movies, drawn by popularity and true
affinity), so the factors have the structure a real catalogue gives them (random factors have
none, and no ANN index finds anything in them). For the 1M-user bundle the fitted users are
repeated with a little noise, their seen rows with them: what a request costs depends on the
catalogue and on the bundle's size in memory, not on who the user is.

Figures:

* **recall@200** of the index against the exact top 200 (inner product), on 2,000 users the
  index kind was not chosen on (``build_for_bundle`` picks the kind on another 1,000), for
  every kind; target (issue 22) >= 0.95 for the kind the trainer keeps;
* **list agreement**: the share of the exact top-20 list (seen excluded) the two-stage ranking
  returns;
* **per-request cost** of ``Engine.rank`` (``serving.retrieval=exact`` vs ``ann``; same bundle,
  same users, seen movies excluded), rounds interleaved (exact, ann, exact, ann, ...): median
  and p99 microseconds;
* **the retrieval step** a learned ranker needs (issue 22): the user's state and the index's
  ``RANKER_CANDIDATES`` best unseen movies with their exact scores
  (``Engine.user_state`` + ``Engine.first_stage``), interleaved with the same exact ranking,
  and its recall@50; target: at most as slow as today's exact scoring.

Writes ``bench/results/retrieval.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# one BLAS thread, as bench/serve.py runs the model server (a replica per core scales out; a
# 20,000 x 64 product split over threads is faster alone and slower under load)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import interleave, ratio_rounds, write_result  # noqa: E402

CANDIDATES = 200
RANKER_CANDIDATES = 50  # trainer.ranker.candidates
TARGET_RECALL = 0.95


def world_histories(n_users: int, n_movies: int, per_user: int, seed: int) -> sp.csr_matrix:
    """Users × movies: each user's ``per_user`` movies, drawn without replacement with weight
    popularity × affinity⁴ (Gumbel top-k), from the simulator's world."""
    from simulator.world import World, WorldConfig

    world = World.build(WorldConfig(n_users=n_users, n_movies=n_movies, seed=seed))
    rng = np.random.default_rng(seed)
    log_pop = np.log(world.popularity[:n_movies])
    movies = np.arange(n_movies)
    rows, cols = [], []
    for start in range(0, n_users, 1000):
        users = np.arange(start, min(start + 1000, n_users))
        logits = log_pop + 4 * np.log(world.affinity(users[:, None], movies[None, :]) + 1e-6)
        top = np.argpartition(-(logits + rng.gumbel(size=logits.shape)), per_user, axis=1)
        rows.append(np.repeat(users, per_user))
        cols.append(top[:, :per_user].ravel())
    rows_a, cols_a = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.full(rows_a.size, 20.0, np.float32), (rows_a, cols_a)),
                         shape=(n_users, n_movies))


def build_bundle(directory: Path, n_users: int, n_movies: int, bundle_users: int,
                 seed: int) -> tuple[Path, dict]:
    from movierec_core.models import save_bundle
    from movierec_core.models.registry_of_models import make_model
    from movierec_core.models.retrieval import RetrievalConfig, build_for_bundle

    t = time.perf_counter()
    x = world_histories(n_users, n_movies, 40, seed)
    model = make_model({"name": "als", "factors": 64, "iterations": 10, "regularization": 0.05,
                        "random_state": seed}, num_threads=2).fit(x)
    fit_s = time.perf_counter() - t
    fitted_users = np.asarray(model.user_factors)
    index = build_for_bundle(model.item_factors, fitted_users[:1000],
                             RetrievalConfig(candidates=CANDIDATES, recall_users=1000), seed)
    # the bundle's users: the fitted ones, repeated (with noise) up to bundle_users
    reps = -(-bundle_users // n_users)
    rng = np.random.default_rng(seed + 1)
    users = np.tile(fitted_users, (reps, 1))[:bundle_users]
    users = users + rng.normal(0, 0.01 * np.abs(users).mean(), users.shape).astype(np.float32)
    seen = sp.vstack([x] * reps, format="csr")[:bundle_users]
    model.user_factors = np.ascontiguousarray(users, dtype=np.float32)
    save_bundle(directory, model, [f"movie+{i}+2000" for i in range(n_movies)],
                np.arange(bundle_users, dtype=np.int64) * 3 + 7, seen,
                manifest={"version": "bench", "config": {}})
    index.save(directory)
    return directory, {"fit_s": round(fit_s, 1), "fitted_users": n_users,
                       "bundle_users": bundle_users, "items": n_movies, "factors": 64,
                       "index": {k: v for k, v in index.meta.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    n_movies, n_users, bundle_users = ((5_000, 20_000, 20_000) if args.quick
                                       else (20_000, 20_000, 1_000_000))
    from model_server.engine import Engine
    from movierec_core.models.retrieval import (
        AnnIndex,
        RetrievalConfig,
        recall_at,
    )

    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    try:
        bundle, info = build_bundle(work / "bundle", n_users, n_movies, bundle_users, args.seed)
        exact = Engine.load(bundle)
        ann = Engine.load(bundle, retrieval="ann", candidates=CANDIDATES)
        items = np.asarray(exact.model.item_factors)
        users_f = np.asarray(exact.model.user_factors)
        # held out: users the index kind was not chosen on (those were rows 0..999)
        rng = np.random.default_rng(args.seed + 2)
        rows = rng.choice(np.arange(1000, bundle_users), 2000, replace=False)
        recall = {ann.retrieval.config.kind: round(
            recall_at(ann.retrieval, items, users_f[rows], CANDIDATES), 4)}
        for kind in ("hnsw_ip", "hnsw_mips", "ivf"):
            if kind not in recall:
                other = AnnIndex.build(items, RetrievalConfig(kind=kind, candidates=CANDIDATES))
                recall[kind] = round(recall_at(other, items, users_f[rows], CANDIDATES), 4)
        ids = exact.user_ids[rows].tolist()
        agree = [len(set(exact.rank(u, [], 20).items) & set(ann.rank(u, [], 20).items)) / 20
                 for u in ids[:500]]
        recall_50 = round(recall_at(ann.retrieval, items, users_f[rows], RANKER_CANDIDATES), 4)
        per_request: dict[str, list[float]] = {"exact": [], "ann": [], "retrieve": []}

        def retrieve(u: int) -> None:
            vector, _, _, seen, _ = ann.user_state(u, [])
            ann.first_stage(vector, seen, n=RANKER_CANDIDATES)

        def timed(engine: Engine, name: str):
            call = retrieve if name == "retrieve" else (lambda u: engine.rank(u, [], 20))

            def run() -> float:
                costs = []
                for u in ids:
                    t = time.perf_counter_ns()
                    call(u)
                    costs.append(time.perf_counter_ns() - t)
                per_request[name] += costs
                return float(np.median(costs) / 1000)
            return run

        arms = ((exact, "exact"), (ann, "ann"), (ann, "retrieve"))
        for engine, name in arms:  # warm each once
            timed(engine, name)()
            per_request[name].clear()
        rounds = interleave(args.rounds, {name: timed(engine, name) for engine, name in arms})
        ratio = ratio_rounds(rounds["ann"], rounds["exact"])
        retrieve_ratio = ratio_rounds(rounds["retrieve"], rounds["exact"])
        p99 = {name: round(float(np.percentile(v, 99) / 1000), 1)
               for name, v in per_request.items()}
        chosen = ann.retrieval.config.kind
        figures = {
            "model": info, "candidates": CANDIDATES, "held_out_users": len(rows),
            "recall_at_200": recall, "recall_at_200_chosen": recall[chosen],
            "chosen_kind": chosen,
            "top20_agreement": {"mean": round(float(np.mean(agree)), 4),
                                "min": round(float(np.min(agree)), 4), "users": len(agree)},
            "rank_us_exact": rounds["exact"], "rank_us_ann": rounds["ann"],
            "rank_us_ratio_ann_to_exact": ratio,
            "ranker_candidates": RANKER_CANDIDATES, "recall_at_50_chosen": recall_50,
            "ef_search_for_50": ann.retrieval.ef_for(RANKER_CANDIDATES),
            "retrieve_us": rounds["retrieve"],
            "retrieve_us_ratio_to_exact_rank": retrieve_ratio,
            "rank_p99_us": p99, "rounds": args.rounds,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        }
        targets = {"recall_at_200_ge_0.95": recall[chosen] >= TARGET_RECALL,
                   "recall_at_50_ge_0.95": recall_50 >= TARGET_RECALL,
                   "retrieval_step_at_most_as_slow_as_exact_ranking":
                       retrieve_ratio["median"] <= 1.0}
        path = write_result("retrieval", figures, targets, quick=args.quick)
        print(f"recall@200 {recall} (chosen {chosen}), recall@50 {recall_50}; top-20 agreement "
              f"{np.mean(agree):.3f}; rank µs exact {rounds['exact']['median']} ann "
              f"{rounds['ann']['median']} (ratio {ratio['median']}); retrieval step of "
              f"{RANKER_CANDIDATES} {rounds['retrieve']['median']} µs (ratio "
              f"{retrieve_ratio['median']}); p99 {p99}; -> {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
