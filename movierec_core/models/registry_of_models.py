"""Model type name → class, and building a model from a ``ModelConfig``."""

from __future__ import annotations

import inspect
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

    Every key the model's constructor accepts is taken from the config (top level, then
    ``params`` on top); ``num_threads`` is the caller's (BPR stays single-threaded so that it
    is reproducible). Keys that the model does not take are ignored.
    """
    if hasattr(cfg, "items"):
        values = {str(k): v for k, v in cfg.items()}
    else:
        values = {k: getattr(cfg, k) for k in dir(cfg) if not k.startswith("_")}
    name = str(values.get("name", "als"))
    if name not in MODEL_TYPES:
        raise ValueError(f"unknown model name {name!r}; known: {sorted(MODEL_TYPES)}")
    cls = MODEL_TYPES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    extra = dict(values.get("params") or {})
    kw = {k: values[k] for k in accepted if k in values and values[k] is not None}
    kw.update({k: v for k, v in extra.items() if k in accepted})
    if "num_threads" in accepted:
        kw["num_threads"] = 1 if name == "bpr" else num_threads
    return cls(**kw)
