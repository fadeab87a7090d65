"""Small trained bundles for tests of packages that consume bundles (the model server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from movierec_core.models.bundle import save_bundle
from movierec_core.models.popularity import ColdStartModel, segment_of
from movierec_core.models.registry_of_models import make_model

TINY_GENRES = 3


def tiny_interactions(n_users: int = 60, n_items: int = 40, seed: int = 0) -> sp.csr_matrix:
    """Users × items confidences with block structure: user u likes genre u % 3 (items i % 3)."""
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for u in range(n_users):
        liked = [i for i in range(n_items) if i % TINY_GENRES == u % TINY_GENRES]
        picks = rng.choice(liked, size=min(len(liked), 6), replace=False)
        for i in picks:
            rows.append(u)
            cols.append(int(i))
            vals.append(float(rng.integers(1, 4)))
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)


def tiny_bundle(directory: Path | str, model: str = "als", n_users: int = 60, n_items: int = 40,
                seed: int = 0) -> Path:
    """Train a small model and write a complete bundle; returns its directory.

    Users have ids ``1000 + 10·row`` (sorted), movies ids ``movie+<i>+2000``; user row r's
    demographics: age 20 + (r % 5)·10, gender M/F alternating, occupation ``scientist`` /
    ``writer``. Costs rise linearly 0..1 with the item index; every runtime is 100 minutes.
    """
    x = tiny_interactions(n_users, n_items, seed)
    cfg = {"name": model, "factors": 8, "iterations": 10, "regularization": 0.1,
           "random_state": seed, "l2": 10.0, "neighbours": 10}
    m = make_model(cfg, num_threads=1).fit(x)
    user_ids = 1000 + 10 * np.arange(n_users, dtype=np.int64)
    item_ids = [f"movie+{i}+2000" for i in range(n_items)]
    segments = [segment_of(20 + (r % 5) * 10, "MF"[r % 2], ("scientist", "writer")[r % 2])
                for r in range(n_users)]
    cold = ColdStartModel(list_size=20, min_users=3).fit(x, segments)
    costs = np.linspace(0.0, 1.0, n_items, dtype=np.float32)
    runtimes = np.full(n_items, 100.0, dtype=np.float32)
    return save_bundle(directory, m, item_ids, user_ids, x, costs=costs, cold_start=cold,
                       runtimes=runtimes,
                       manifest={"version": "tiny", "snapshot": {"id": "tiny", "hash": "0" * 64},
                                 "code_version": "test", "config": cfg,
                                 "metrics": {"ndcg@10": 0.0}})
