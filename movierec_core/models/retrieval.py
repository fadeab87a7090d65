"""Candidate retrieval: an approximate nearest-neighbour index over a factor model's item factors
(faiss), built at training time into the bundle, searched by the model server for the first
stage of a two-stage ranking (``serving.retrieval=ann``).

A user's candidates are the ``n`` items of highest inner product ``f_i · u`` (maximum inner
product search). Index kinds:

* ``hnsw_ip``: ``faiss.IndexHNSWFlat`` with the inner-product metric; ``hnsw_m`` links per
  node, ``ef_construction`` at build, ``ef_search`` at query (at least ``n``);
* ``hnsw_mips``: the same graph under the L2 metric over the items augmented with
  ``sqrt(M² - ||f_i||²)`` (M the largest norm) and the query with 0, which turns the inner
  product search into a nearest-neighbour one (Bachrach et al., 2014): better when item norms
  vary a lot, worse when they do not;
* ``auto`` (default): builds both and keeps the one of higher recall on the training users —
  which one wins depends on the model's factors (measured: ALS on the simulator's world 0.95
  vs 0.83 for ``hnsw_ip``; clustered factors with log-normal norms 0.98 vs 0.80 for
  ``hnsw_mips``);
* ``ivf``: ``faiss.IndexIVFFlat`` over ``nlist`` inner-product clusters, ``nprobe`` searched.

Files in the bundle: ``retrieval.faiss`` (the index) and ``retrieval.json`` (kind, parameters,
and the recall@n against exact scoring measured at build time on the training users).
Exact scoring (``model_server.ranking.NormPrunedScorer``) stays the reference: the recall is
the share of the exact top ``n`` the index returns.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

INDEX_FILE = "retrieval.faiss"
META_FILE = "retrieval.json"


@dataclass
class RetrievalConfig:
    """The index a trainer builds (``trainer.retrieval``) and how it is searched."""

    enabled: bool = True  # the trainer builds one for factor models
    kind: str = "auto"  # auto | hnsw_ip | hnsw_mips | ivf
    candidates: int = 200
    # links per node: 16 halves the graph's level-0 lists of 32, so a search computes fewer
    # distances (the retrieval step of 50 unseen: 0.82 x exact ranking; 1.13 x with 32 links and
    # a hash-set selector)
    hnsw_m: int = 16
    ef_construction: int = 200
    # the graph search's breadth: 0 = max(64, 1.25 x the items asked for) (recall@50 0.991 at
    # 64, recall@200 0.974 at 250 on the simulator's world; bench/results/retrieval.json);
    # n > 0: max(n, the items asked for)
    ef_search: int = 0
    nlist: int = 128
    nprobe: int = 32
    recall_users: int = 1000  # training users the build-time recall is measured on

    @classmethod
    def from_config(cls, node: Any) -> RetrievalConfig:
        fields = cls.__dataclass_fields__
        return cls(**{k: type(getattr(cls, k))(node[k]) for k in fields if k in node})


@functools.cache
def _faiss():
    import faiss  # only factor models with retrieval need it

    faiss.omp_set_num_threads(1)  # one query at a time: threads cost more than they save
    return faiss


class AnnIndex:
    """``search(vector, n)`` → item indices of (about) the ``n`` highest inner products."""

    def __init__(self, index: Any, config: RetrievalConfig, meta: dict | None = None) -> None:
        self.index = index
        self.config = config
        self.meta = dict(meta or {})
        self._hnsw_params: dict[int, Any] = {}
        self._local = threading.local()  # per thread: the parameters of filtered searches
        self._apply_search_params(config.candidates)

    @property
    def _hnsw(self) -> bool:
        return self.config.kind.startswith("hnsw")

    def ef_for(self, n: int) -> int:
        """The HNSW search breadth for ``n`` results (see ``RetrievalConfig.ef_search``)."""
        if self.config.ef_search > 0:
            return max(self.config.ef_search, n)
        return max(64, -(-5 * n // 4))

    def _new_params(self, n: int) -> Any:
        """Search parameters for ``n`` results: the HNSW breadth, or the IVF lists probed."""
        faiss = _faiss()
        if self._hnsw:
            params = faiss.SearchParametersHNSW()
            params.efSearch = self.ef_for(n)
        else:
            params = faiss.SearchParametersIVF()
            params.nprobe = self.config.nprobe
        return params

    def _params(self, n: int) -> Any:
        """Per-call search parameters (the index is shared by the server's threads: setting
        ``efSearch`` on it per call would race); IVF's ``nprobe`` is fixed on the index."""
        if not self._hnsw:
            return None
        params = self._hnsw_params.get(n)
        if params is None:
            params = self._new_params(n)
            if len(self._hnsw_params) < 64:
                self._hnsw_params[n] = params
        return params

    def _apply_search_params(self, n: int) -> None:
        if self._hnsw:
            self.index.hnsw.efSearch = self.ef_for(n)
        else:
            self.index.nprobe = self.config.nprobe

    @classmethod
    def build(cls, item_factors: np.ndarray, config: RetrievalConfig | None = None) -> AnnIndex:
        faiss = _faiss()
        config = config or RetrievalConfig()
        if config.kind == "auto":
            raise ValueError("build one kind at a time (build_for_bundle chooses for auto)")
        factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        n_items, dim = factors.shape
        if config.kind == "hnsw_ip":
            index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.ef_construction
        elif config.kind == "hnsw_mips":
            factors = _augment(factors)
            index = faiss.IndexHNSWFlat(dim + 1, config.hnsw_m)
            index.hnsw.efConstruction = config.ef_construction
        elif config.kind == "ivf":
            nlist = max(1, min(config.nlist, n_items // 39 or 1))  # faiss: >= 39 points a list
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            index.train(factors)
        else:
            raise ValueError("retrieval kind must be auto, hnsw_ip, hnsw_mips or ivf, not "
                             f"{config.kind!r}")
        index.add(factors)
        return cls(index, config, {"kind": config.kind, "items": n_items, "dim": dim})

    def search(self, vector: np.ndarray, n: int) -> np.ndarray:
        return self.search_scored(vector, n)[0]

    def search_scored(self, vector: np.ndarray, n: int, exclude: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """Item indices of (about) the ``n`` best, none of ``exclude`` (filtered during the
        search, so ``n`` come back when that many remain), and their inner products where the
        index computes them (``hnsw_ip``, ``ivf``; None for ``hnsw_mips``'s distances)."""
        n = min(int(n), self.index.ntotal)
        if n <= 0:
            return np.empty(0, dtype=np.int64), None
        if exclude is not None and len(exclude):
            params = self._filtered_params(n, exclude)
        else:
            params = self._params(n)
        query = self._query(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        scores, found = self.index.search(query, n, params=params)
        ids, scores = found[0], scores[0]
        if ids[-1] < 0:  # fewer than n found: the missing ones are -1 at the end
            keep = ids >= 0
            ids, scores = ids[keep], scores[keep]
        return ids, (scores if self.config.kind != "hnsw_mips" else None)

    def _filtered_params(self, n: int, exclude: np.ndarray) -> Any:
        """Search parameters for ``n`` results with a selector of every item but ``exclude``:
        a bitmap of the allowed items (one byte read per test; a hash set behind a negation
        costs two virtual calls). One set per thread, refilled per call: building the SWIG
        objects per call cost ~25 us of Python a request, more than the search's bitmap."""
        state = getattr(self._local, "filtered", None)
        if state is None:
            faiss = _faiss()
            state = self._local.filtered = _Filter(
                self._new_params(n), np.empty((self.index.ntotal + 7) // 8, dtype=np.uint8),
                np.empty(self.index.ntotal, dtype=bool), n)
            selector = faiss.IDSelectorBitmap(self.index.ntotal, faiss.swig_ptr(state.bits))
            selector.bits = state.bits  # the selector reads the array: it must live as long
            state.params.sel = selector  # the parameters keep it alive
        if state.n != n and self._hnsw:
            state.params.efSearch = self.ef_for(n)
            state.n = n
        state.allowed.fill(True)
        state.allowed[np.asarray(exclude, dtype=np.int64)] = False
        state.bits[:] = np.packbits(state.allowed, bitorder="little")
        return state.params

    def search_many(self, vectors: np.ndarray, n: int) -> np.ndarray:
        """(users, n) item indices, -1 where fewer were found."""
        _, found = self.index.search(self._query(np.asarray(vectors, np.float32)), int(n),
                                     params=self._params(int(n)))
        return found

    def _query(self, vectors: np.ndarray) -> np.ndarray:
        if self.config.kind == "hnsw_mips":  # the augmented coordinate of a query is 0
            vectors = np.hstack([vectors, np.zeros((vectors.shape[0], 1), np.float32)])
        return np.ascontiguousarray(vectors, dtype=np.float32)

    # -- files ---------------------------------------------------------------------------
    def save(self, directory: Path | str) -> None:
        faiss = _faiss()
        d = Path(directory)
        faiss.write_index(self.index, str(d / INDEX_FILE))
        (d / META_FILE).write_text(json.dumps(
            {**self.meta, "config": asdict(self.config)}, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path | str, candidates: int | None = None) -> AnnIndex | None:
        """The bundle's index, or None when it has none."""
        d = Path(directory)
        if not (d / INDEX_FILE).is_file():
            return None
        faiss = _faiss()
        meta = json.loads((d / META_FILE).read_text())
        config = RetrievalConfig(**meta.get("config", {}))
        if candidates is not None:
            config = RetrievalConfig(**{**asdict(config), "candidates": int(candidates)})
        return cls(faiss.read_index(str(d / INDEX_FILE)), config, meta)


@dataclass(slots=True)
class _Filter:
    """One thread's filtered-search parameters, their selector's bitmap and its unpacked form."""

    params: Any
    bits: np.ndarray
    allowed: np.ndarray
    n: int


def _augment(factors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(factors.astype(np.float64), axis=1)
    extra = np.sqrt(np.maximum(norms.max() ** 2 - norms ** 2, 0.0))
    return np.ascontiguousarray(np.hstack([factors, extra[:, None]]), dtype=np.float32)


def exact_top(item_factors: np.ndarray, users: np.ndarray, n: int) -> np.ndarray:
    """(users, n) item indices of the exact top ``n`` inner products (the reference)."""
    scores = np.asarray(users, dtype=np.float32) @ np.asarray(item_factors, np.float32).T
    n = min(n, scores.shape[1])
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    return top


def recall_at(index: AnnIndex, item_factors: np.ndarray, users: np.ndarray, n: int) -> float:
    """Mean share of each user's exact top ``n`` that the index returns among its ``n``."""
    if len(users) == 0:
        return float("nan")
    exact = exact_top(item_factors, users, n)
    found = index.search_many(users, n)
    hits = [np.intersect1d(e, f[f >= 0], assume_unique=True).size
            for e, f in zip(exact, found, strict=True)]
    return float(np.mean(hits) / exact.shape[1])


def build_for_bundle(item_factors: np.ndarray, user_factors: np.ndarray,
                     config: RetrievalConfig, seed: int = 0) -> AnnIndex:
    """Build the index (for ``auto``: each HNSW kind, keeping the one of higher recall) and
    record its recall@candidates on up to ``recall_users`` training users in ``meta``."""
    users = np.asarray(user_factors)
    sample = None
    if users.shape[0]:
        rng = np.random.default_rng(seed)
        pick = rng.choice(users.shape[0], min(config.recall_users, users.shape[0]), replace=False)
        sample = np.asarray(users[np.sort(pick)], dtype=np.float32)
    kinds = ("hnsw_ip", "hnsw_mips") if config.kind == "auto" else (config.kind,)
    best, tried = None, {}
    for kind in kinds:
        index = AnnIndex.build(item_factors, replace(config, kind=kind))
        if sample is None:
            best = index
            break
        tried[kind] = round(recall_at(index, item_factors, sample, config.candidates), 4)
        if best is None or tried[kind] > tried[best.config.kind]:
            best = index
    assert best is not None
    if sample is not None:
        best.meta["recall_at_candidates"] = tried[best.config.kind]
        best.meta["recall_users"] = int(sample.shape[0])
        best.meta["recall_by_kind"] = tried
    best.meta["candidates"] = config.candidates
    return best
