"""The second stage's training: logged recommendation requests joined to what the user watched
after them, as LambdaMART training data over :mod:`movierec_core.features` (issue 22).

Leakage: a request's features come from what was known at its instant: the user's
interactions then (:class:`movierec_core.features.LakeHistory`, the online store's answer at
that instant) and a first-stage factor model fitted on events *before* the first training
request (``first_stage``); the labels (did the user watch >= ``min_minutes`` of the listed movie
within ``window_minutes``) come after. Position bias: the lists users were shown put the first
stage's favourites first, and users look at the top more. Two remedies, both on: LightGBM's
position-debiased LambdaMART (the ``position`` of each logged item, an examination factor per
position learned jointly with the ranker, after Unbiased LambdaMART, Hu et al., WWW 2019), and the
exploration cohort (:func:`movierec_core.models.ranker.exploring`), whose shuffled lists measure
the click curve by position without the ranker's help (reported as ``position_ctr``).

Selection: requests are split by time; the ranker is trained on the earlier ones and judged on
the later ones against the first stage's own order of the same logged items (nDCG@k of watched
through movies): :func:`train_ranker` keeps it only when it wins there beyond chance.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from movierec_core.features import (
    ItemTable,
    LakeHistory,
    candidate_features,
    feature_names,
    user_features,
)
from movierec_core.models.ranker import Ranker, exploring
from movierec_core.watch_through import listed_outcomes

log = logging.getLogger("trainer.ranker")


@dataclass
class RankerSettings:
    """``trainer.ranker``: the learned second stage (off: factor scores rank alone)."""

    enabled: bool = True
    candidates: int = 50  # the first stage's best N unseen items the ranker orders at serving
    min_requests: int = 300  # fewer usable logged requests: no ranker
    # the requests of the latest share of events train and judge the ranker; its first stage
    # is fitted on the events before them (a split of its own, apart from the candidates')
    test_fraction: float = 0.3
    validation_fraction: float = 0.25  # the latest share of those requests judges the ranker
    min_minutes: int = 15  # a listed movie counts as watched through with this many minutes
    window_minutes: float = 60.0  # ... within this long after the request
    exploration_share: float = 0.0  # must equal serving.exploration_share
    exploration_salt: int = 20260  # must equal serving.exploration_salt
    position_bias_regularization: float = 0.0
    keep_p_value: float = 0.05  # kept only when its nDCG gain is this unlikely by chance
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    learning_rate: float = 0.05
    rounds: int = 400
    early_stopping_rounds: int = 40
    eval_at: int = 20
    seed: int = 42
    extra: dict[str, Any] = field(default_factory=dict)  # more LightGBM parameters


@dataclass
class RankerData:
    rows: np.ndarray  # features
    labels: np.ndarray  # 1: watched through
    positions: np.ndarray  # where the item was shown
    first_rank: np.ndarray  # the first stage's rank of the item among unseen items
    groups: np.ndarray  # rows per request, in order
    times: np.ndarray  # request time, per group
    explored: np.ndarray  # request from the exploration cohort, per group
    skipped: dict[str, int]


def build_rows(first_stage: Any, requests: pd.DataFrame, watches: pd.DataFrame,
               history: LakeHistory, items: ItemTable, settings: RankerSettings) -> RankerData:
    """Training rows from logged successful requests (lake columns ``time, user_id, status,
    movie_ids``) and watch minutes (``time, user_id, movie_id``). ``first_stage``: an
    :class:`model_server.engine.Engine` fitted before the requests."""
    listed = listed_outcomes(requests, watches, settings.window_minutes)
    skipped = {"cold_start": 0, "unknown_movies": 0, "seen_before": 0, "beyond_candidates": 0,
               "no_rows": 0}
    feats, labels, positions, ranks, groups, times, users = [], [], [], [], [], [], []
    index = first_stage._item_index
    for _req, block in listed.groupby("request", sort=True):
        user = int(block["user_id"].iat[0])
        at = pd.Timestamp(block["time"].iat[0]).to_pydatetime()
        interactions = history.interactions_as_of(user, at)
        state = first_stage.user_state(user, interactions, now=at)
        if not isinstance(state, tuple) or state[0] is None:
            skipped["cold_start"] += 1
            continue
        vector, _, _, seen, _ = state
        idx = np.array([index.get(m, -1) for m in block["movie_id"].tolist()], np.int64)
        known = idx >= 0
        skipped["unknown_movies"] += int((~known).sum())
        item_idx = idx[known]
        fresh = ~np.isin(item_idx, seen)
        skipped["seen_before"] += int((~fresh).sum())
        if not fresh.any():
            skipped["no_rows"] += 1
            continue
        _, scores, item_ranks, best = first_stage.first_stage(vector, seen,
                                                              items=item_idx[fresh])
        # only what the ranker will be asked to order: the first stage's best `candidates`
        # (lists logged from another policy, e.g. popularity, hold movies it never sees)
        among = item_ranks < settings.candidates
        skipped["beyond_candidates"] += int((~among).sum())
        if not among.any():
            skipped["no_rows"] += 1
            continue
        kept = np.flatnonzero(known)[fresh][among]  # the block's rows that become rows
        u = user_features(interactions, index, items, at)
        feats.append(candidate_features(u, idx[kept], scores[among], item_ranks[among], best,
                                        items, at))
        labels.append((block["minutes"].to_numpy()[kept] >= settings.min_minutes)
                      .astype(np.int32))
        positions.append(block["position"].to_numpy(np.int32)[kept])
        ranks.append(item_ranks[among])
        groups.append(kept.size)
        times.append(np.datetime64(at, "us"))
        users.append(user)
    n_features = len(feature_names())
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.empty(0, dt))  # noqa: E731
    return RankerData(
        rows=np.vstack(feats) if feats else np.empty((0, n_features), np.float32),
        labels=cat(labels, np.int32), positions=cat(positions, np.int32),
        first_rank=cat(ranks, np.float32), groups=np.asarray(groups, np.int64),
        times=np.asarray(times, "datetime64[us]"),
        explored=exploring(np.asarray(users, np.int64), settings.exploration_share,
                           settings.exploration_salt) if users and settings.exploration_share
        else np.zeros(len(groups), bool),
        skipped=skipped)


def position_ctr(data: RankerData, k: int = 20) -> dict[str, Any]:
    """Watched-through rate by shown position in the exploration cohort (shuffled lists: the
    curve is the users' attention, not the model's ordering), and elsewhere."""
    group_of_row = np.repeat(np.arange(data.groups.size), data.groups)
    out: dict[str, Any] = {}
    for name, mask in (("exploration", data.explored[group_of_row]),
                       ("ranked", ~data.explored[group_of_row])):
        rates = []
        for p in range(k):
            sel = mask & (data.positions == p)
            rates.append(round(float(data.labels[sel].mean()), 4) if sel.any() else None)
        out[name] = {"requests": int((data.explored if name == "exploration"
                                      else ~data.explored).sum()), "rate_by_position": rates}
    return out


def _slice(data: RankerData, groups: np.ndarray) -> tuple[np.ndarray, ...]:
    starts = np.concatenate([[0], np.cumsum(data.groups)])
    rows = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups]) if groups.size \
        else np.empty(0, np.int64)
    return (data.rows[rows], data.labels[rows], data.positions[rows], data.first_rank[rows],
            data.groups[groups])


def ndcg_at(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Mean nDCG@k over groups with at least one positive (ties broken by row order)."""
    values = ndcg_per_group(scores, labels, groups, k)
    return float(np.mean(values)) if values.size else float("nan")


def ndcg_per_group(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                   k: int) -> np.ndarray:
    """nDCG@k of each group with at least one positive, in group order."""
    out, start = [], 0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for n in groups.tolist():
        lab = labels[start:start + n]
        if lab.any():
            order = np.lexsort((np.arange(n), -scores[start:start + n]))[:k]
            dcg = float((lab[order] * discounts[:order.size]).sum())
            ideal = float(discounts[:min(int(lab.sum()), k)].sum())
            out.append(dcg / ideal)
        start += n
    return np.asarray(out, np.float64)


def hit_at(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Share of groups with a positive that have one among their ``k`` best by ``scores``
    (the watch-through proxy: users mostly look at the top of a list)."""
    hits, start = [], 0
    for n in groups.tolist():
        lab = labels[start:start + n]
        if lab.any():
            order = np.lexsort((np.arange(n), -scores[start:start + n]))[:k]
            hits.append(bool(lab[order].any()))
        start += n
    return float(np.mean(hits)) if hits else float("nan")


def train_ranker(first_stage: Any, requests: pd.DataFrame, watches: pd.DataFrame,
                 history: LakeHistory, items: ItemTable, settings: RankerSettings
                 ) -> tuple[Ranker | None, dict[str, Any]]:
    """Fit on the earlier requests, judge on the later ones; the ranker (or None) and a report.
    The ranker is kept only when its nDCG@``eval_at`` on the later requests beats the first
    stage's order of the same items beyond chance (``keep_p_value``)."""
    import lightgbm as lgb

    t0 = time.perf_counter()
    data = build_rows(first_stage, requests, watches, history, items, settings)
    report: dict[str, Any] = {"requests": int(data.groups.size), "rows": int(data.labels.size),
                              "positives": int(data.labels.sum()), "skipped": data.skipped,
                              "position_ctr": position_ctr(data), "features": feature_names()}
    if data.groups.size < settings.min_requests or data.labels.sum() == 0:
        report["kept"] = False
        report["reason"] = (f"{data.groups.size} usable requests ({int(data.labels.sum())} "
                            f"watched through); at least {settings.min_requests} are needed")
        return None, report
    order = np.argsort(data.times, kind="stable")
    n_valid = max(1, int(round(order.size * settings.validation_fraction)))
    train_g, valid_g = np.sort(order[:-n_valid]), np.sort(order[-n_valid:])
    xt, yt, pt, _, gt = _slice(data, train_g)
    xv, yv, pv, rv, gv = _slice(data, valid_g)
    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [settings.eval_at],
              "num_leaves": settings.num_leaves, "min_data_in_leaf": settings.min_data_in_leaf,
              "learning_rate": settings.learning_rate, "seed": settings.seed,
              "deterministic": True, "num_threads": 1, "verbosity": -1,
              "lambdarank_position_bias_regularization":
                  settings.position_bias_regularization, **settings.extra}
    train_set = lgb.Dataset(xt, yt, group=gt, position=pt, feature_name=feature_names(),
                            free_raw_data=False)
    valid_set = lgb.Dataset(xv, yv, group=gv, reference=train_set, free_raw_data=False)
    booster = lgb.train(params, train_set, num_boost_round=settings.rounds,
                        valid_sets=[valid_set],
                        callbacks=[lgb.early_stopping(settings.early_stopping_rounds,
                                                      verbose=False)])
    ranker_scores = booster.predict(xv, num_iteration=booster.best_iteration)
    ranker_ndcg = ndcg_at(ranker_scores, yv, gv, settings.eval_at)
    first_ndcg = ndcg_at(-rv.astype(np.float64), yv, gv, settings.eval_at)
    shown_ndcg = ndcg_at(-pv.astype(np.float64), yv, gv, settings.eval_at)
    proxy = {name: round(hit_at(sc, yv, gv, 5), 4) for name, sc in (
        ("ranker", ranker_scores), ("first_stage", -rv.astype(np.float64)),
        ("as_shown", -pv.astype(np.float64)))}
    gain = booster.feature_importance("gain")
    report.update({
        "train_requests": int(train_g.size), "validation_requests": int(valid_g.size),
        "best_iteration": int(booster.best_iteration),
        f"validation_ndcg@{settings.eval_at}": {"ranker": round(ranker_ndcg, 4),
                                                "first_stage": round(first_ndcg, 4),
                                                "as_shown": round(shown_ndcg, 4)},
        # the watch-through proxy: a watched-through movie among the first five
        "validation_watched_in_top5": proxy,
        "feature_gain": {n: round(float(g), 1) for n, g in sorted(
            zip(feature_names(), gain, strict=True), key=lambda kv: -kv[1])},
        "train_s": round(time.perf_counter() - t0, 2)})
    # kept when better by more than chance: a one-sided paired t-test of the per-request
    # nDCG differences (a hair's breadth on one split is noise, and a ranker is not free)
    diffs = (ndcg_per_group(ranker_scores, yv, gv, settings.eval_at)
             - ndcg_per_group(-rv.astype(np.float64), yv, gv, settings.eval_at))
    p_value = (float(stats.ttest_1samp(diffs, 0.0, alternative="greater").pvalue)
               if diffs.size > 1 and diffs.std() > 0 else 1.0)
    report["ndcg_gain"] = {"mean": round(float(diffs.mean()), 4) if diffs.size else None,
                           "requests": int(diffs.size), "p_value": round(p_value, 4)}
    kept = bool(ranker_ndcg > first_ndcg and p_value < settings.keep_p_value)
    report["kept"] = kept
    if not kept:
        report["reason"] = (f"the ranker did not beat the first stage's order on later requests "
                            f"(nDCG@{settings.eval_at} {ranker_ndcg:.4f} vs {first_ndcg:.4f}, "
                            f"one-sided p {p_value:.3g}, needs < {settings.keep_p_value:g})")
        return None, report
    meta = {"candidates": settings.candidates, "features": feature_names(),
            "best_iteration": int(booster.best_iteration), "report": report}
    return Ranker(booster, items, meta), report


# --------------------------------------------------------------------------- in the pipeline
def _frame(tables: dict[str, Any], name: str, columns: list[str]) -> pd.DataFrame:
    table = tables.get(name)
    if table is None or table.num_rows == 0:
        return pd.DataFrame(columns=columns)
    return table.select(columns).to_pandas()


def second_stage(tables: dict[str, Any], events: pd.DataFrame, movies: pd.DataFrame,
                 weights: Any, fit: Any, half_life_h: float, item_ids: np.ndarray,
                 all_pairs: pd.DataFrame, costs: np.ndarray, work_dir: Any,
                 settings: RankerSettings, config: dict[str, Any], min_user: int = 1,
                 min_item: int = 1, user_half_life_h: float = 0.0
                 ) -> tuple[Ranker | None, dict[str, Any]]:
    """The pipeline's ranker for the registered model. Its own temporal split: the logged
    requests of the latest ``test_fraction`` of events (windows closed by the snapshot's last
    event) train it and the latest of them judge it; its first stage is the selected model
    (``fit(matrix)``, with the selected half-lives) fitted on the events before them, so no
    label is in a feature. The item table is rebuilt for the registered model's items (``item_ids``,
    ``all_pairs``, ``costs``)."""
    from model_server.engine import Engine
    from movierec_core import lake
    from movierec_core.models.bundle import save_bundle
    from trainer.data import (
        InteractionMatrix,
        aggregate_pairs,
        decayed,
        filter_min_counts,
        item_costs,
    )
    from trainer.evaluation import split_time_at_quantile

    requests = _frame(tables, lake.RECOMMENDATION_REQUESTS,
                      ["time", "user_id", "status", "movie_ids"])
    watches = (pd.DataFrame() if requests.empty else
               _frame(tables, lake.WATCH_MINUTES, ["time", "user_id", "movie_id", "minute"]))
    if requests.empty or watches.empty:
        return None, {"kept": False, "reason": "the snapshot has no logged recommendation "
                                               "requests or no watch minutes"}
    split = split_time_at_quantile(events["time"], settings.test_fraction)
    requests["time"] = pd.to_datetime(requests["time"])
    last_event = pd.to_datetime(watches["time"]).max()
    usable = requests[(requests["status"] == 200) & (requests["time"] >= split) & (
        requests["time"] + pd.Timedelta(minutes=settings.window_minutes) <= last_event)]
    pairs = filter_min_counts(aggregate_pairs(events[events["time"] < split], movies, weights),
                              min_user, min_item)
    if pairs.empty or usable.empty:
        return None, {"kept": False, "split_time": str(split), "reason": (
            f"no interactions before the ranker's split {split}" if pairs.empty else
            f"no logged request at or after {split} whose {settings.window_minutes:g}-minute "
            f"window closed before the snapshot's last event")}
    matrix = InteractionMatrix.from_pairs(decayed(pairs, half_life_h, split))
    model = fit(matrix.matrix)
    if user_half_life_h:  # per-user recency, as the registered model's users get it
        matrix = InteractionMatrix.from_pairs(decayed(pairs, user_half_life_h, split))
        model.refold_users(matrix.matrix)
    runtimes = (movies["runtime"].reindex(matrix.item_ids).to_numpy(np.float32)
                if len(movies) else None)
    save_bundle(work_dir, model, matrix.item_ids, matrix.user_ids, matrix.matrix,
                costs=item_costs(matrix.item_ids, movies), runtimes=runtimes,
                manifest={"version": "first-stage", "config": config,
                          "recency": {"half_life_h": half_life_h,
                                      "user_half_life_h": user_half_life_h}},
                confidence_weights=weights)
    ratings = _frame(tables, lake.RATINGS, ["user_id", "movie_id", "time", "stars"])
    metadata = _frame(tables, lake.MOVIES, ["movie_id", "genres", "runtime", "fetched_at"])
    if len(metadata):
        metadata = metadata.sort_values("fetched_at", kind="stable")
    first = Engine.load(work_dir, ranker=False)
    ranker, report = train_ranker(
        first, usable, watches, LakeHistory(watches, ratings),
        ItemTable.build(first.item_ids, metadata, pairs, first.costs), settings)
    report["split_time"] = str(split)
    if ranker is None:
        return None, report
    items = ItemTable.build(item_ids, metadata, all_pairs, costs)
    return Ranker(ranker.booster, items, ranker.meta), report
