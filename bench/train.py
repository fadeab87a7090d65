"""Trainer benchmark: pure ``implicit`` ALS vs the trainer's production pipeline, same matrix.

    .venv/bin/python bench/train.py            # 1,000,000 users × 20,000 movies, ~20M interactions
    .venv/bin/python bench/train.py --quick    # 50,000 × 5,000, ~1M

Baseline: ``implicit.cpu.als.AlternatingLeastSquares(factors=64, iterations=15)`` ``fit`` on the
CSR matrix. Pipeline (``trainer.pipeline.fit_and_publish`` after ``InteractionMatrix.from_pairs``):
(user id, movie id, confidence) pairs → sorted-id CSR matrix → the same ALS fit through the
trainer's model class → cold-start lists → bundle written (float32 .npy) → registered as a
new version with champion/challenger aliases. Both use the same ``num_threads``. Lake reading
and event aggregation are not in the ratio (they depend on the lake, not on the trainer).
Rounds interleave (implicit, pipeline, implicit, pipeline, ...); the ratio is taken round by
round, median and spread reported, with the pipeline's stages. Writes
``bench/results/train.json``. Target (issue 19): the pipeline within 1.1 x implicit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import interleave, ratio_rounds, spread, write_result  # noqa: E402
from movierec_core.registry import FileRegistry  # noqa: E402
from trainer.data import InteractionMatrix  # noqa: E402
from trainer.pipeline import fit_and_publish  # noqa: E402

TARGET_RATIO = 1.1


def synthetic_pairs(n_users: int, n_items: int, nnz: int, seed: int = 0) -> pd.DataFrame:
    """Zipf item popularity, log-normal user activity; confidences 0.2..2 (watch + rating)."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    counts = np.maximum(1, np.round(activity / activity.sum() * nnz)).astype(np.int64)
    users = np.repeat(np.arange(n_users, dtype=np.int64) * 7 + 11, counts)  # sparse ids
    pop = 1.0 / (1 + np.arange(n_items)) ** 0.9
    items = rng.choice(n_items, size=users.size, p=pop / pop.sum())
    movie_ids = np.array([f"movie+{i}+{1950 + i % 70}" for i in range(n_items)])
    conf = rng.uniform(0.2, 2.0, users.size).astype(np.float32)
    pairs = pd.DataFrame({"user_id": users, "movie_id": movie_ids[items], "confidence": conf})
    return pairs.drop_duplicates(["user_id", "movie_id"]).reset_index(drop=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--users", type=int)
    ap.add_argument("--items", type=int)
    ap.add_argument("--nnz", type=int)
    ap.add_argument("--threads", type=int, default=0, help="implicit num_threads (0 = all cores)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    n_users = a.users or (50_000 if a.quick else 1_000_000)
    n_items = a.items or (5_000 if a.quick else 20_000)
    nnz = a.nnz or (1_000_000 if a.quick else 20_000_000)
    factors, iterations, reg = 64, 15, 0.05

    t = time.perf_counter()
    pairs = synthetic_pairs(n_users, n_items, nnz)
    gen_s = time.perf_counter() - t
    print(f"data: {pairs['user_id'].nunique():,} users × {n_items:,} movies, "
          f"{len(pairs):,} interactions (generated in {gen_s:.1f}s)", flush=True)

    # baseline: pure implicit on the CSR matrix the pipeline builds (built outside its timer)
    matrix = InteractionMatrix.from_pairs(pairs).matrix
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    warnings.filterwarnings("ignore", message="OpenBLAS is configured")
    stage_rounds: list[dict] = []
    bundle_bytes = 0

    def implicit_round() -> float:
        with threadpool_limits(1, "blas"):
            base = AlternatingLeastSquares(factors=factors, iterations=iterations,
                                           regularization=reg, random_state=0,
                                           num_threads=a.threads)
            t = time.perf_counter()
            base.fit(matrix, show_progress=False)
            return time.perf_counter() - t

    def pipeline_round() -> float:
        nonlocal bundle_bytes
        tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
        try:
            tc = SimpleNamespace(num_threads=a.threads, cold_start_list_size=100,
                                 cold_start_min_users=5, report_plots=False, promote=False,
                                 register=True,
                                 model_name="movierec")
            model_cfg = {"name": "als", "factors": factors, "iterations": iterations,
                         "regularization": reg, "alpha": 1.0, "random_state": 0}
            t = time.perf_counter()
            final = InteractionMatrix.from_pairs(pairs)
            matrix_s = time.perf_counter() - t
            pub = fit_and_publish(final, [None] * final.user_ids.size, model_cfg, tc,
                                  FileRegistry(tmp / "registry"), tmp / "bundle",
                                  {"model_name": "movierec",
                                   "snapshot": {"id": "bench", "hash": None}})
            elapsed = time.perf_counter() - t
            bundle_bytes = sum(f.stat().st_size for f in pub.bundle_dir.rglob("*") if f.is_file())
            stage_rounds.append({"matrix_s": matrix_s, **pub.timings})
            return elapsed
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def printed(name, fn):
        def run() -> float:
            seconds = fn()
            print(f"  {name}: {seconds:.1f} s", flush=True)
            return seconds
        return run

    times = interleave(a.rounds, {"implicit_fit_s": printed("implicit ALS fit", implicit_round),
                                  "pipeline_s": printed("trainer pipeline", pipeline_round)})
    ratio = ratio_rounds(times["pipeline_s"], times["implicit_fit_s"])
    stages = {k: spread([r[k] for r in stage_rounds]) for k in stage_rounds[0]}
    print(f"pipeline stages (median s): { {k: v['median'] for k, v in stages.items()} }")
    print(f"ratio pipeline / implicit: {ratio['median']:.2f} ({ratio['min']:.2f} … "
          f"{ratio['max']:.2f}; target ≤ {TARGET_RATIO})")
    out = write_result("train", {
        "users": int(pairs["user_id"].nunique()), "items": int(n_items),
        "interactions": int(len(pairs)), "factors": factors, "iterations": iterations,
        "num_threads": a.threads, "rounds": a.rounds, **times,
        "ratio_to_implicit": ratio, "bundle_bytes": int(bundle_bytes),
        "pipeline_stages_s": stages,
    }, {f"median ratio_to_implicit <= {TARGET_RATIO}": bool(ratio["median"] <= TARGET_RATIO)},
        quick=bool(a.quick))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
