"""Item-based candidates: EASE (closed form, Steck 2019) and item-item cosine kNN (``implicit``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec_core.models.base import Recommender, _load, as_csr


class EASEModel(Recommender):
    """Embarrassingly Shallow Autoencoder: B = I - P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹.

    The weights are dense over the *modelled* items: those with at least ``min_support``
    training users, at most the ``max_items`` most popular (an n³ inverse and n² float32
    weights: 12K items is 0.6 GB). Items left out score ``-inf`` (never recommended).
    ``binary``: fit on 0/1 instead of confidences.
    """

    model_type = "ease"

    def __init__(self, l2: float = 250.0, binary: bool = True, max_items: int = 12000,
                 min_support: int = 1) -> None:
        super().__init__()
        self.l2, self.binary = float(l2), bool(binary)
        self.max_items, self.min_support = int(max_items), int(min_support)
        self.weights: np.ndarray | None = None
        self.columns: np.ndarray | None = None  # modelled item indices (sorted)

    def params(self) -> dict[str, Any]:
        return {"l2": self.l2, "binary": self.binary, "max_items": self.max_items,
                "min_support": self.min_support}

    def _fit(self, interactions: sp.csr_matrix) -> None:
        x = self._input(interactions)
        support = np.asarray((x > 0).sum(axis=0)).ravel()
        cols = np.flatnonzero(support >= max(self.min_support, 1))
        if cols.size > self.max_items:
            order = np.lexsort((cols, -support[cols]))
            cols = np.sort(cols[order[: self.max_items]])
        if cols.size == 0:
            cols = np.arange(interactions.shape[1])
        xs = x[:, cols]
        gram = (xs.T @ xs).toarray().astype(np.float64)
        gram[np.diag_indices(cols.size)] += self.l2
        p = np.linalg.inv(gram)
        del gram
        p /= -np.diag(p)
        p[np.diag_indices(cols.size)] = 0.0
        self.weights = p.astype(np.float32)
        self.columns = cols.astype(np.int64)

    def _input(self, m: sp.csr_matrix) -> sp.csr_matrix:
        if not self.binary:
            return m
        b = m.copy()
        b.data = np.ones_like(b.data)
        return b

    def scores_for_items(self, user_items: Any) -> np.ndarray:
        rows = self._input(as_csr(user_items, self.n_items))
        cols = np.asarray(self.columns)
        part = np.asarray(rows[:, cols] @ np.asarray(self.weights), dtype=np.float32)
        if cols.size == self.n_items:
            scores = part
        else:
            scores = np.full((rows.shape[0], self.n_items), -np.inf, dtype=np.float32)
            scores[:, cols] = part
        return scores[0] if rows.shape[0] == 1 else scores

    def _save_arrays(self, d: Path) -> None:
        np.save(d / "weights.npy", np.ascontiguousarray(self.weights, dtype=np.float32))
        np.save(d / "columns.npy", np.asarray(self.columns, dtype=np.int64))

    def _load_arrays(self, d: Path, mmap: bool) -> None:
        self.weights = _load(d, "weights.npy", mmap)
        self.columns = _load(d, "columns.npy", mmap)

    def memory_bytes(self) -> int:
        return int(self.weights.nbytes + self.columns.nbytes)


class ItemKNNModel(Recommender):
    """Item-item cosine nearest neighbours (``implicit.nearest_neighbours.CosineRecommender``)."""

    model_type = "itemknn"

    def __init__(self, neighbours: int = 100, num_threads: int = 0) -> None:
        super().__init__()
        self.neighbours, self.num_threads = int(neighbours), int(num_threads)
        self.similarity: sp.csr_matrix | None = None

    def params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "num_threads": self.num_threads}

    def _fit(self, interactions: sp.csr_matrix) -> None:
        from implicit.nearest_neighbours import CosineRecommender

        m = CosineRecommender(K=self.neighbours, num_threads=self.num_threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # implicit's note about converting to CSR
            m.fit(interactions, show_progress=False)
        self.similarity = sp.csr_matrix(m.similarity, dtype=np.float32)

    def scores_for_items(self, user_items: Any) -> np.ndarray:
        rows = as_csr(user_items, self.n_items)
        scores = np.asarray((rows @ self.similarity).toarray(), dtype=np.float32)
        return scores[0] if rows.shape[0] == 1 else scores

    def _save_arrays(self, d: Path) -> None:
        s = self.similarity
        np.save(d / "similarity_indptr.npy", s.indptr.astype(np.int64))
        np.save(d / "similarity_indices.npy", s.indices.astype(np.int32))
        np.save(d / "similarity_data.npy", s.data.astype(np.float32))

    def _load_arrays(self, d: Path, mmap: bool) -> None:
        self.similarity = sp.csr_matrix(
            (_load(d, "similarity_data.npy", mmap), _load(d, "similarity_indices.npy", mmap),
             _load(d, "similarity_indptr.npy", mmap)), shape=(self.n_items, self.n_items))

    def memory_bytes(self) -> int:
        s = self.similarity
        return int(s.data.nbytes + s.indices.nbytes + s.indptr.nbytes)
