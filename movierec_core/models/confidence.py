"""Implicit-feedback confidence from watching and rating, shared by the trainer (offline) and
the model server (folding in the online store's recent interactions): one function, one rule.

    confidence = watch · min(minutes_watched / runtime, 1) + rating · stars / scale_max

* runtime unknown, zero or NaN → ``default_runtime`` minutes;
* minutes NaN or negative → 0 (no watch signal);
* stars NaN/None or outside ``1..scale_max`` → no rating signal (the trainer counts and reports
  such rows before calling this);
* ``dislike_below > 0``: a rating below it zeroes the whole confidence (the pair is dropped: a
  dislike is not positive implicit feedback).

A result of 0 means "no interaction" (not stored in the sparse matrix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ConfidenceWeights:
    watch: float = 1.0
    rating: float = 1.0
    scale_max: int = 5
    dislike_below: float = 0.0
    default_runtime: float = 100.0


def confidence(minutes_watched: Any, runtime: Any, stars: Any,
               weights: ConfidenceWeights | None = None) -> Any:
    """Vectorised (arrays broadcast; scalars in → float out). See the module docstring."""
    w = weights or ConfidenceWeights()
    scalar = all(np.ndim(x) == 0 for x in (minutes_watched, runtime, stars))
    minutes = _floats(minutes_watched)
    rt = _floats(runtime)
    st = _floats(stars)
    rt = np.where(np.isfinite(rt) & (rt > 0), rt, w.default_runtime)
    minutes = np.where(np.isfinite(minutes) & (minutes > 0), minutes, 0.0)
    watched = np.minimum(minutes / rt, 1.0)
    valid_star = np.isfinite(st) & (st >= 1) & (st <= w.scale_max)
    rated = np.where(valid_star, st / w.scale_max, 0.0)
    c = w.watch * watched + w.rating * rated
    if w.dislike_below > 0:
        c = np.where(valid_star & (st < w.dislike_below), 0.0, c)
    c = np.maximum(c, 0.0).astype(np.float32)
    return float(c) if scalar else c


def _floats(x: Any) -> np.ndarray:
    if x is None:
        return np.array(np.nan)
    arr = np.asarray(x, dtype=object if isinstance(x, list | tuple) else None)
    if arr.dtype == object:
        arr = np.array([np.nan if v is None else v for v in arr.ravel()], dtype=np.float64).reshape(arr.shape)
    return arr.astype(np.float64)


# an old interaction keeps this much weight at least: it stays seen (excluded) even when it no
# longer counts
MIN_RECENCY_WEIGHT = 1e-4


def recency_weight(age_h: Any, half_life_h: float) -> np.ndarray:
    """``0.5 ** (age / half_life_h)`` (ages in hours, negative ones as 0), at least
    ``MIN_RECENCY_WEIGHT``; 1 everywhere when ``half_life_h`` is 0 (no decay). Shared by the
    trainer (decayed confidences) and the model server (folding in the online store's events
    at the bundle's half-life), so a user's vector weighs time the same way both sides."""
    age = np.maximum(np.asarray(age_h, dtype=np.float64), 0.0)
    if not half_life_h:
        return np.ones_like(age)
    return np.maximum(np.power(0.5, age / float(half_life_h)), MIN_RECENCY_WEIGHT)
