"""The one recommender interface every candidate implements, and the ranking helpers they share.

Users and items are *row/column indices* of a users × items CSR matrix of implicit confidences
(see :func:`movierec_core.models.confidence.confidence`). Mapping ids to indices is the job of a
:class:`~movierec_core.models.bundle.Bundle`, not of the models.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

MODEL_FILE = "model.json"


def as_csr(user_items: Any, n_items: int) -> sp.csr_matrix:
    """A float32 CSR matrix with ``n_items`` columns (accepts CSR, dense rows, or index lists)."""
    if sp.issparse(user_items):
        m = sp.csr_matrix(user_items, dtype=np.float32)
    else:
        arr = np.asarray(user_items, dtype=np.float32)
        m = sp.csr_matrix(arr.reshape(1, -1) if arr.ndim == 1 else arr)
    if m.shape[1] != n_items:
        raise ValueError(f"user_items has {m.shape[1]} columns, the model has {n_items} items")
    return m


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` best items, best first; ``exclude`` items never returned.

    Ties break by lower item index so results are deterministic.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    n_valid = int(np.isfinite(scores).sum())
    k = max(0, min(k, n_valid))
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    if k < scores.size:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(scores.size)
    order = np.lexsort((part, -scores[part]))
    idx = part[order]
    keep = np.isfinite(scores[idx])
    idx = idx[keep]
    return idx.astype(np.int64), scores[idx]


def top_k_batch(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """Row-wise top-k item indices of a (users × items) score matrix; excluded cells masked.

    Rows with fewer than ``k`` rankable items are padded with -1.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None and exclude.nnz:
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    n_items = scores.shape[1]
    k = min(k, n_items)
    if k <= 0:
        return np.empty((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n_items else np.tile(
        np.arange(n_items), (scores.shape[0], 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # sort by score desc, then index asc (deterministic ties)
    order = np.lexsort((part, -part_scores), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    ok = np.isfinite(np.take_along_axis(scores, idx, axis=1))
    return np.where(ok, idx, -1).astype(np.int64)


class Recommender(ABC):
    """fit / recommend / fold_in / save / load, plus scoring hooks the model server ranks with."""

    model_type: ClassVar[str] = ""

    def __init__(self) -> None:
        self._user_items: sp.csr_matrix | None = None
        self._user_items_loader: Callable[[], sp.csr_matrix] | None = None
        self.n_items: int = 0

    @property
    def user_items(self) -> sp.csr_matrix | None:
        """What was seen at fit, or the interactions of the bundle the model was loaded from
        (built on first use: the model server ranks from the bundle's arrays and never does)."""
        if self._user_items is None and self._user_items_loader is not None:
            self._user_items = self._user_items_loader()
        return self._user_items

    @user_items.setter
    def user_items(self, value: sp.csr_matrix | None) -> None:
        self._user_items = value

    def attach_seen(self, loader: Callable[[], sp.csr_matrix]) -> None:
        """Let ``user_items`` come from ``loader()`` when first needed."""
        self._user_items, self._user_items_loader = None, loader

    # --- training ------------------------------------------------------------------------
    def fit(self, interactions: sp.csr_matrix) -> Recommender:
        """Learn from a users × items CSR matrix of confidences (zero = no interaction)."""
        m = sp.csr_matrix(interactions, dtype=np.float32)
        m.sum_duplicates()
        m.eliminate_zeros()
        self.user_items = m
        self.n_items = m.shape[1]
        self._fit(m)
        return self

    @abstractmethod
    def _fit(self, interactions: sp.csr_matrix) -> None: ...

    # --- scoring -------------------------------------------------------------------------
    @abstractmethod
    def scores_for_items(self, user_items: Any) -> np.ndarray:
        """Scores of all items for users given by their items (1×N → (N,), B×N → (B, N))."""

    def scores_for_user(self, user_index: int) -> np.ndarray:
        """Scores of all items for a user seen at fit time."""
        return self.scores_for_items(self._seen_row(user_index))

    def scores_for_users(self, user_indices: np.ndarray) -> np.ndarray:
        """(len(users), n_items) scores for users seen at fit time (batch evaluation)."""
        rows = self._require_seen()[np.asarray(user_indices, dtype=np.int64)]
        return np.atleast_2d(np.asarray(self.scores_for_items(rows), np.float32))

    def fold_in(self, user_items: Any) -> np.ndarray:
        """A representation of a user from their items without refitting (default: the row)."""
        return as_csr(user_items, self.n_items).toarray()[0]

    # --- ranking -------------------------------------------------------------------------
    def recommend(self, user: int, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (item indices, scores) for a user row seen at fit time."""
        scores = self.scores_for_user(user)
        exclude = self._seen_row(user).indices if exclude_seen else None
        return top_k(scores, k, exclude)

    def recommend_items(self, user_items: Any, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for a user given by items (fold-in, then rank): new or updated users."""
        row = as_csr(user_items, self.n_items)
        scores = self.scores_for_items(row)
        return top_k(scores, k, row.indices if exclude_seen else None)

    def recommend_batch(self, users: np.ndarray, k: int = 10, exclude_seen: bool = True) -> np.ndarray:
        """(len(users), k) item indices (padded with -1), best first."""
        users = np.asarray(users, dtype=np.int64)
        scores = self.scores_for_users(users)
        exclude = self._require_seen()[users] if exclude_seen else None
        return top_k_batch(scores, k, exclude)

    # --- persistence ---------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Hyper-parameters (JSON-serialisable) recorded in ``model.json``."""
        return {}

    def save(self, directory: Path | str) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"model_type": self.model_type, "n_items": int(self.n_items), "params": self.params()}
        self._save_arrays(d)
        (d / MODEL_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return d

    @classmethod
    def load(cls, directory: Path | str, mmap: bool = True) -> Recommender:
        d = Path(directory)
        meta = json.loads((d / MODEL_FILE).read_text())
        if cls.model_type and meta["model_type"] != cls.model_type:
            raise ValueError(f"{d} holds a {meta['model_type']!r} model, not {cls.model_type!r}")
        model = cls(**meta["params"])
        model.n_items = int(meta["n_items"])
        model._load_arrays(d, mmap)
        return model

    @abstractmethod
    def _save_arrays(self, d: Path) -> None: ...

    @abstractmethod
    def _load_arrays(self, d: Path, mmap: bool) -> None: ...

    # --- helpers -------------------------------------------------------------------------
    def _require_seen(self) -> sp.csr_matrix:
        if self.user_items is None:
            raise RuntimeError(f"{type(self).__name__}: no user_items (fit it, or load a bundle)")
        return self.user_items

    def _seen_row(self, user_index: int) -> sp.csr_matrix:
        m = self._require_seen()
        if not 0 <= user_index < m.shape[0]:
            raise IndexError(f"user index {user_index} out of range (0..{m.shape[0] - 1})")
        return m[user_index]

    def memory_bytes(self) -> int:
        """Bytes held by the learned parameters (for the comparison report)."""
        return 0


def _load(d: Path, name: str, mmap: bool) -> np.ndarray:
    return np.load(d / name, mmap_mode="r" if mmap else None, allow_pickle=False)
