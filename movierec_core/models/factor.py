"""Matrix-factorisation candidates on top of ``implicit``: ALS and BPR.

Both store float32 ``user_factors.npy`` (n_users × f) and ``item_factors.npy`` (n_items × f),
loadable with ``np.load(mmap_mode="r")``; scores are dot products.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec_core.models.base import Recommender, _load, as_csr


class FactorModel(Recommender):
    """Shared scoring for factor models: score = item_factors @ user_vector."""

    def __init__(self) -> None:
        super().__init__()
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def _fold_in_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def fold_in(self, user_items: Any) -> np.ndarray:
        """User factor vector for a user given by (item → confidence) without refitting."""
        return self._fold_in_rows(as_csr(user_items, self.n_items))[0]

    def refold_users(self, rows: sp.csr_matrix, batch: int = 100_000) -> None:
        """Every user's vector folded in again from ``rows`` (users × items confidences, the
        fitted rows' order), the item factors kept: how a user's own history is weighed (e.g.
        by recency) without changing what the items learned from everyone's."""
        rows = sp.csr_matrix(rows, dtype=np.float32)
        if rows.shape != (np.shape(self.user_factors)[0], self.n_items):
            raise ValueError(f"refold_users: rows {rows.shape} do not match the model's users x "
                             f"items ({np.shape(self.user_factors)[0]}, {self.n_items})")
        self.user_factors = np.vstack([self._fold_in_rows(rows[i:i + batch])
                                       for i in range(0, rows.shape[0], batch)]
                                      or [np.empty((0, np.shape(self.user_factors)[1]),
                                                   np.float32)])

    def scores_for_items(self, user_items: Any) -> np.ndarray:
        rows = as_csr(user_items, self.n_items)
        scores = self._fold_in_rows(rows) @ np.asarray(self.item_factors).T
        return scores[0] if rows.shape[0] == 1 else scores

    def scores_for_user(self, user_index: int) -> np.ndarray:
        if not 0 <= user_index < self.user_factors.shape[0]:
            raise IndexError(f"user index {user_index} out of range")
        return np.asarray(self.item_factors) @ np.asarray(self.user_factors[user_index])

    def scores_for_users(self, user_indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors[user_indices]) @ np.asarray(self.item_factors).T

    def _save_arrays(self, d: Path) -> None:
        np.save(d / "user_factors.npy", np.ascontiguousarray(self.user_factors, dtype=np.float32))
        np.save(d / "item_factors.npy", np.ascontiguousarray(self.item_factors, dtype=np.float32))

    def _load_arrays(self, d: Path, mmap: bool) -> None:
        self.user_factors = _load(d, "user_factors.npy", mmap)
        self.item_factors = _load(d, "item_factors.npy", mmap)

    def memory_bytes(self) -> int:
        return int(self.user_factors.nbytes + self.item_factors.nbytes)


def _to_numpy(a: Any) -> np.ndarray:
    return np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a, dtype=np.float32)


class ALSModel(FactorModel):
    """Weighted ALS (Hu, Koren, Volinsky) from ``implicit``; fold-in with ``recalculate_user``."""

    model_type = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 1.0,
                 iterations: int = 15, random_state: int = 42, num_threads: int = 0) -> None:
        super().__init__()
        self.factors, self.regularization, self.alpha = int(factors), float(regularization), float(alpha)
        self.iterations, self.random_state, self.num_threads = int(iterations), int(random_state), int(num_threads)
        self._implicit = None

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization, "alpha": self.alpha,
                "iterations": self.iterations, "random_state": self.random_state,
                "num_threads": self.num_threads}

    def _model(self):
        if self._implicit is None:
            from implicit.cpu.als import AlternatingLeastSquares

            warnings.filterwarnings("ignore", message="OpenBLAS is configured")
            self._implicit = AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                iterations=self.iterations, random_state=self.random_state,
                num_threads=self.num_threads)
        return self._implicit

    def _fit(self, interactions: sp.csr_matrix) -> None:
        from threadpoolctl import threadpool_limits

        self._implicit = None
        # implicit parallelises itself; a BLAS threadpool on top of it only slows it down
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = self._model()
            m.fit(interactions, show_progress=False)
        self.user_factors = _to_numpy(m.user_factors)
        self.item_factors = _to_numpy(m.item_factors)

    def _load_arrays(self, d: Path, mmap: bool) -> None:
        super()._load_arrays(d, mmap)
        self._implicit = None

    def _fold_in_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        m = self._model()
        if m.item_factors is None:
            # implicit's Cython kernels need a writable buffer; a mmap'd bundle is read-only.
            items = self.item_factors
            writable = isinstance(items, np.ndarray) and items.flags.writeable
            m.item_factors = items if writable else np.array(items, dtype=np.float32)
        return np.asarray(m.recalculate_user(np.arange(rows.shape[0]), rows), dtype=np.float32)


class BPRModel(FactorModel):
    """Bayesian Personalised Ranking from ``implicit``.

    ``implicit`` appends an item-bias column to the item factors and a constant 1 to the user
    factors. Fold-in (BPR has no closed form): the confidence-weighted mean of the user's item
    vectors, bias component fixed at 1.
    """

    model_type = "bpr"

    def __init__(self, factors: int = 64, learning_rate: float = 0.01, regularization: float = 0.01,
                 iterations: int = 100, random_state: int = 42, num_threads: int = 1) -> None:
        super().__init__()
        self.factors, self.learning_rate = int(factors), float(learning_rate)
        self.regularization, self.iterations = float(regularization), int(iterations)
        # Hogwild SGD is only reproducible single-threaded; default 1 thread.
        self.random_state, self.num_threads = int(random_state), int(num_threads)

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "learning_rate": self.learning_rate,
                "regularization": self.regularization, "iterations": self.iterations,
                "random_state": self.random_state, "num_threads": self.num_threads}

    def _fit(self, interactions: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        m = BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self.regularization, iterations=self.iterations,
            random_state=self.random_state, num_threads=self.num_threads)
        m.fit(interactions, show_progress=False)
        self.user_factors = _to_numpy(m.user_factors)
        self.item_factors = _to_numpy(m.item_factors)

    def _fold_in_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        items = np.asarray(self.item_factors)
        weights = rows.multiply(1.0 / np.maximum(rows.sum(axis=1), 1e-9)).tocsr()
        users = np.asarray(weights @ items, dtype=np.float32)
        users[:, -1] = 1.0
        return users
