"""Model type name → class, and building a model from a ``ModelConfig``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from movierec_core.models.base import MODEL_FILE, Recommender
from movierec_core.models.factor import ALSModel, BPRModel
from movierec_core.models.neighbours import EASEModel, ItemKNNModel
from movierec_core.models.popularity import ColdStartModel, PopularityModel

MODEL_TYPES: dict[str, type[Recommender]] = {
    cls.model_type: cls
    for cls in (ALSModel, BPRModel, EASEModel, ItemKNNModel, PopularityModel, ColdStartModel)
}


def load_model(directory: Path | str, mmap: bool = True) -> Recommender:
    """Load whatever model ``model.json`` in ``directory`` says it is."""
    meta = json.loads(Path(directory, MODEL_FILE).read_text())
    try:
        cls = MODEL_TYPES[meta["model_type"]]
    except KeyError:
        raise ValueError(f"unknown model type {meta['model_type']!r} in {directory}") from None
    return cls.load(directory, mmap=mmap)


def make_model(cfg: Any, num_threads: int = 0) -> Recommender:
    """Build an unfitted model from a ``ModelConfig`` (or any mapping with its fields).

    ``cfg.params`` entries override the named fields (e.g. ``binary`` for EASE).
    """
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    name = str(get("name", "als"))
    extra = dict(get("params", {}) or {})
    if name == "als":
        kw = dict(factors=get("factors", 64), regularization=get("regularization", 0.05),
                  alpha=get("alpha", 1.0), iterations=get("iterations", 15),
                  random_state=get("random_state", 42), num_threads=num_threads)
    elif name == "bpr":
        kw = dict(factors=get("factors", 64), learning_rate=get("learning_rate", 0.01),
                  regularization=get("regularization", 0.01), iterations=get("iterations", 100),
                  random_state=get("random_state", 42), num_threads=1)
    elif name == "ease":
        kw = dict(l2=get("l2", 300.0))
    elif name == "itemknn":
        kw = dict(neighbours=get("neighbours", 100), num_threads=num_threads)
    elif name in ("popularity",):
        kw = {}
    elif name == "cold_start":
        kw = {}
    else:
        raise ValueError(f"unknown model name {name!r}; known: {sorted(MODEL_TYPES)}")
    kw.update(extra)
    return MODEL_TYPES[name](**kw)
