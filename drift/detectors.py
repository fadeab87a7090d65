"""alibi-detect over the feature tables: one ``TabularDrift`` per detector.

Numeric features get a two-sample Kolmogorov-Smirnov test, categorical ones a chi-square test
(``categories_per_feature``); alibi's correction (bonferroni or fdr) combines a detector's
features. Detectors share one family-wise budget: each gets ``p_val / n_detectors`` so the
whole run raises a false alarm with probability at most ``p_val`` on a stationary stream.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from drift.features import FEATURES, FeatureContext, extract, popularity_percentiles
from drift.window import Catalog, Window

POPULARITY_DETECTORS = ("item_popularity", "recommendation_scores")


@dataclass
class FeatureResult:
    p_value: float
    distance: float
    categorical: bool


@dataclass
class DetectorResult:
    detector: str
    is_drift: bool
    threshold: float  # the detector's p-value budget before alibi's per-feature correction
    n_reference: int
    n_current: int
    skipped: str = ""  # non-empty: why the detector did not run
    features: dict[str, FeatureResult] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _encode(
    ref: pd.DataFrame, cur: pd.DataFrame, spec: list[tuple[str, bool]]
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Float matrices for alibi; categoricals become codes over the union of both windows."""
    ref_cols, cur_cols, categories = [], [], {}
    for i, (name, categorical) in enumerate(spec):
        if categorical:
            vocab = {v: j for j, v in enumerate(sorted(set(ref[name]) | set(cur[name])))}
            ref_cols.append(ref[name].map(vocab).to_numpy(dtype=float))
            cur_cols.append(cur[name].map(vocab).to_numpy(dtype=float))
            categories[i] = len(vocab)
        else:
            ref_cols.append(ref[name].to_numpy(dtype=float))
            cur_cols.append(cur[name].to_numpy(dtype=float))
    return np.column_stack(ref_cols), np.column_stack(cur_cols), categories


def compare_tables(
    detector: str,
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    p_val: float,
    correction: str = "bonferroni",
    min_samples: int = 30,
    max_samples: int = 5000,
    seed: int = 0,
) -> DetectorResult:
    """Run one detector's TabularDrift on its reference and current unit tables."""
    spec = FEATURES[detector]
    result = DetectorResult(detector, False, p_val, len(ref), len(cur))
    if len(ref) < min_samples or len(cur) < min_samples:
        result.skipped = f"too few samples (reference {len(ref)}, current {len(cur)}, " \
                         f"need {min_samples})"
        return result
    if len(ref) > max_samples:
        ref = ref.sample(max_samples, random_state=seed)
    if len(cur) > max_samples:
        cur = cur.sample(max_samples, random_state=seed + 1)
    # A feature with a single value in both windows cannot drift (and breaks chi-square).
    live = [(n, c) for n, c in spec if pd.concat([ref[n], cur[n]]).nunique(dropna=False) > 1]
    p_values = np.ones(len(spec))
    distances = np.zeros(len(spec))
    if live:
        x_ref, x_cur, categories = _encode(ref, cur, live)
        from alibi_detect.cd import TabularDrift  # heavy import (transformers): only when used

        cd = TabularDrift(
            x_ref, p_val=p_val, categories_per_feature=categories, correction=correction
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = cd.predict(x_cur, drift_type="batch", return_p_val=True,
                              return_distance=True)
        data = pred["data"]
        live_p = np.nan_to_num(np.asarray(data["p_val"], dtype=float), nan=1.0)
        live_d = np.nan_to_num(np.asarray(data["distance"], dtype=float), nan=0.0)
        index = {n: i for i, (n, _) in enumerate(spec)}
        for j, (n, _) in enumerate(live):
            p_values[index[n]], distances[index[n]] = live_p[j], live_d[j]
    for i, (name, categorical) in enumerate(spec):
        result.features[name] = FeatureResult(float(p_values[i]), float(distances[i]), categorical)
    # alibi's decision rule over all the detector's features (constant ones count, at p = 1)
    result.is_drift = bool(_decide(p_values, p_val, correction))
    result.n_reference, result.n_current = len(ref), len(cur)
    return result


def _decide(p_values: np.ndarray, p_val: float, correction: str) -> bool:
    n = len(p_values)
    if correction == "bonferroni":
        return bool((p_values < p_val / n).any())
    if correction == "fdr":  # Benjamini-Hochberg, as alibi-detect's fdr
        ordered = np.sort(p_values)
        return bool((ordered < p_val * np.arange(1, n + 1) / n).any())
    raise ValueError(f"unknown correction {correction!r}")


@dataclass
class DriftRun:
    """All detectors over one reference/current pair."""

    detectors: dict[str, DetectorResult]
    p_val: float
    correction: str

    @property
    def is_drift(self) -> bool:
        return any(r.is_drift for r in self.detectors.values())

    def drifted(self) -> list[str]:
        return [name for name, r in self.detectors.items() if r.is_drift]


def split_reference(reference: Window) -> tuple[Window, Window]:
    """(popularity slice, sample slice): the reference window's first and second halves."""
    start, end = reference.start, reference.end
    if start is None or end is None:
        return reference, reference
    mid = pd.Timestamp(start) + (pd.Timestamp(end) - pd.Timestamp(start)) / 2
    mid_dt = mid.floor("us").to_pydatetime()
    return reference.slice(start, mid_dt), reference.slice(mid_dt, end)


def run_detectors(
    reference: Window,
    current: Window,
    catalog: Catalog,
    detectors: list[str],
    p_val: float = 0.01,
    correction: str = "bonferroni",
    min_samples: int = 30,
    max_samples: int = 5000,
    max_per_user: int = 1,
    seed: int = 0,
    max_per_user_by_detector: dict[str, int] | None = None,
) -> DriftRun:
    """Every detector in ``detectors`` at a per-detector budget of ``p_val / len(detectors)``."""
    budget = p_val / max(len(detectors), 1)
    pop_slice, pop_sample = split_reference(reference)
    popularity = popularity_percentiles(pop_slice)
    ctx = FeatureContext(catalog, popularity, max_per_user=max_per_user, seed=seed,
                         max_per_user_by_detector=dict(max_per_user_by_detector or {}))
    results = {}
    for name in detectors:
        ref_window = pop_sample if name in POPULARITY_DETECTORS else reference
        ref = extract(name, ref_window, ctx)
        cur = extract(name, current, ctx)
        results[name] = compare_tables(
            name, ref, cur, budget, correction, min_samples, max_samples, seed
        )
    return DriftRun(results, p_val, correction)


def windows_for(
    end: datetime, current_hours: float, reference_hours: float
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """((reference start, end), (current start, end)), back to back, ending at ``end``."""
    cur_start = end - timedelta(hours=current_hours)
    ref_start = cur_start - timedelta(hours=reference_hours)
    return (ref_start, cur_start), (cur_start, end)
