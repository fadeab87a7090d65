"""Hyper-parameter search with optuna on a validation split carved from the *training* events
(the last ``validation_fraction`` of them by time); the test events are never seen here."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from movierec_core.models import ConfidenceWeights, make_model
from trainer.data import InteractionMatrix, aggregate_pairs
from trainer.evaluation import split_time_at_quantile, summarise, temporal_split

log = logging.getLogger("trainer.tune")


def search_space(trial: Any, name: str) -> dict[str, Any]:
    if name == "als":
        return {"factors": trial.suggest_categorical("factors", [32, 64, 128]),
                "regularization": trial.suggest_float("regularization", 0.01, 100.0, log=True),
                "alpha": trial.suggest_float("alpha", 0.5, 20.0, log=True)}
    if name == "bpr":
        return {"learning_rate": trial.suggest_float("learning_rate", 0.005, 0.1, log=True),
                "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True)}
    if name == "ease":
        return {"l2": trial.suggest_float("l2", 10.0, 2000.0, log=True)}
    if name == "itemknn":
        return {"neighbours": trial.suggest_int("neighbours", 10, 400, log=True)}
    return {}


def validation_problem(train_events: pd.DataFrame, movies: pd.DataFrame,
                       weights: ConfidenceWeights, fraction: float, k: int, seed: int,
                       max_users: int) -> tuple[InteractionMatrix, np.ndarray, list[list[int]]]:
    split = temporal_split(train_events, split_time_at_quantile(train_events["time"], fraction))
    fit_pairs = aggregate_pairs(split.train, movies, weights)
    if fit_pairs.empty:
        raise ValueError("validation split left no training interactions")
    fit = InteractionMatrix.from_pairs(fit_pairs)
    val = aggregate_pairs(split.test, movies, weights)
    rows = fit.rows_of(val["user_id"].to_numpy(np.int64))
    cols = fit.cols_of(val["movie_id"].astype(str).to_numpy())
    val = val.assign(row=rows, col=cols)
    val = val[(val["row"] >= 0) & (val["col"] >= 0)]
    seen = fit.matrix
    val = val[np.asarray(seen[val["row"].to_numpy(), val["col"].to_numpy()]).ravel() == 0]
    rel = val.groupby("row")["col"].apply(list)
    urows = rel.index.to_numpy(np.int64)
    if urows.size > max_users:
        urows = np.sort(np.random.default_rng(seed).choice(urows, max_users, replace=False))
    return fit, urows, [rel[r] for r in urows]


def tune_candidates(train_events: pd.DataFrame, movies: pd.DataFrame, weights: ConfidenceWeights,
                    configs: dict[str, dict[str, Any]], tc: Any) -> dict[str, Any]:
    """Best parameters per tunable candidate; ``{name: {"best_params", "best_value", "trials"}}``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = str(tc.tune.metric)
    k = int(metric.split("@")[1]) if "@" in metric else 10
    fit, rows, relevant = validation_problem(train_events, movies, weights,
                                             float(tc.tune.validation_fraction), k, int(tc.seed),
                                             int(tc.eval_max_users))
    out: dict[str, Any] = {}
    for name in [str(m) for m in tc.tune.models]:
        if name not in configs or rows.size == 0:
            continue

        def objective(trial: Any, name: str = name) -> float:
            params = {**configs[name], **search_space(trial, name)}
            model = make_model(params, num_threads=int(tc.num_threads)).fit(fit.matrix)
            recs = model.recommend_batch(rows, k)
            return float(summarise(recs, relevant, [k], fit.matrix.shape[1]).get(metric, 0.0))

        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=int(tc.tune.seed)))
        study.optimize(objective, n_trials=int(tc.tune.n_trials))
        out[name] = {"best_params": study.best_params, "best_value": round(study.best_value, 6),
                     "trials": [{"params": t.params, "value": t.value} for t in study.trials],
                     "validation_users": int(rows.size), "metric": metric}
        log.info("tuned %s: %s → %s=%.4f", name, study.best_params, metric, study.best_value)
    return out
