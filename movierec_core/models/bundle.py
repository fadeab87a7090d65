"""Bundles: one directory (KServe ``storageUri`` → ``/mnt/models``) with everything the model
server ranks with. Layout (all arrays ``.npy``, loadable with ``np.load(mmap_mode="r")``)::

    manifest.json            model type, version, snapshot id + hash, code version, config,
                             metrics, timings, created_at, counts (see save_bundle)
    model/model.json         model type + hyper-parameters; model/*.npy its arrays
    item_ids.npy             (n_items,) unicode: item index → movie id
    user_ids.npy             (n_users,) int32 (int64 if needed), sorted ascending: user row =
                             searchsorted position
    seen_indptr.npy          (n_users+1,) int32/64 ┐ CSR of the training interactions (rows =
    seen_indices.npy         (nnz,) uint16/int32   │ user rows, cols = item indices), for
    seen_confidence.npy      (nnz,) float32        ┘ exclude-seen and fold-in; the smallest
                                                     index types that fit (half the pages)
    popularity.npy           (n_items,) float32 in 0..1
    costs.npy                (n_items,) float32 in 0..1 (license cost / max cost; 0 unknown)
    runtimes.npy             (n_items,) float32 minutes (NaN unknown), for confidence()
    cold_start.json          {"lists": {segment key: [item indices, best first]}}
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec_core.models.base import Recommender
from movierec_core.models.confidence import ConfidenceWeights, confidence
from movierec_core.models.popularity import ALL_USERS, ColdStartModel, _normalised_counts
from movierec_core.models.registry_of_models import load_model

MANIFEST = "manifest.json"
BUNDLE_FORMAT = 1


@dataclass
class Bundle:
    """A loaded bundle: the model plus the id maps and side lists the server ranks with."""

    path: Path
    manifest: dict[str, Any]
    model: Recommender
    item_ids: np.ndarray
    user_ids: np.ndarray
    # the training interactions as CSR arrays, as stored (compact index types, memory-mapped)
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    seen_data: np.ndarray
    popularity: np.ndarray
    costs: np.ndarray
    cold_start: ColdStartModel
    runtimes: np.ndarray | None = None
    _item_index: dict[str, int] | None = field(default=None, repr=False)
    _seen: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def seen(self) -> sp.csr_matrix:
        """The interactions as a scipy CSR matrix, built on first use (scipy widens compact
        index types: a copy the model server, which reads the arrays directly, never makes)."""
        if self._seen is None:
            self._seen = sp.csr_matrix((self.seen_data, self.seen_indices, self.seen_indptr),
                                       shape=(self.user_ids.shape[0], self.n_items))
        return self._seen

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    def user_row(self, user_id: int) -> int | None:
        """Row of a user seen in training, ``None`` for a user the model has never seen."""
        limits = np.iinfo(self.user_ids.dtype)
        if not limits.min <= int(user_id) <= limits.max:
            return None
        # the key in the array's type: numpy would otherwise widen the whole array per call
        pos = int(np.searchsorted(self.user_ids, self.user_ids.dtype.type(user_id)))
        if pos < self.user_ids.shape[0] and int(self.user_ids[pos]) == int(user_id):
            return pos
        return None

    def item_index(self, movie_id: str) -> int | None:
        if self._item_index is None:
            self._item_index = {str(m): i for i, m in enumerate(self.item_ids)}
        return self._item_index.get(movie_id)

    def movie_ids(self, indices: Any) -> list[str]:
        return [str(self.item_ids[int(i)]) for i in indices]

    def seen_items(self, row: int) -> np.ndarray:
        """Item indices the user interacted with in training."""
        return np.asarray(self.seen_indices[self.seen_indptr[row]:self.seen_indptr[row + 1]],
                          dtype=np.int64)

    @property
    def confidence_weights(self) -> ConfidenceWeights:
        """The weights the training interactions were built with (manifest ``confidence``)."""
        return ConfidenceWeights(**(self.manifest.get("confidence") or {}))

    def interactions_row(self, online: Iterable[tuple[str, float, float | None]],
                         base_row: int | None = None) -> sp.csr_matrix:
        """A 1 × n_items CSR of confidences for fold-in: the training row of ``base_row`` (if
        any) merged with ``online`` (movie id, minutes watched, stars or None) interactions via
        :func:`confidence` with the bundle's weights and runtimes; per item the larger
        confidence wins. Movies unknown to the bundle are ignored."""
        conf: dict[int, float] = {}
        if base_row is not None:
            lo, hi = int(self.seen_indptr[base_row]), int(self.seen_indptr[base_row + 1])
            conf = dict(zip(np.asarray(self.seen_indices[lo:hi]).tolist(),
                            np.asarray(self.seen_data[lo:hi]).tolist(), strict=True))
        w = self.confidence_weights
        for movie_id, minutes, stars in online:
            i = self.item_index(movie_id)
            if i is None:
                continue
            rt = float(self.runtimes[i]) if self.runtimes is not None else float("nan")
            c = confidence(minutes, rt, stars, w)
            if c > conf.get(i, 0.0):
                conf[i] = c
        cols = np.array(sorted(conf), dtype=np.int32)
        vals = np.array([conf[i] for i in cols], dtype=np.float32)
        return sp.csr_matrix((vals, cols, np.array([0, cols.size])), shape=(1, self.n_items))

    def cold_start_items(self, age: Any = None, gender: Any = None, occupation: Any = None,
                         k: int = 20, exclude: Any = ()) -> list[int]:
        """Item indices for a user with no history, by demographic segment (fallback chain)."""
        return self.cold_start.items_for(age, gender, occupation, k, exclude)


def save_bundle(directory: Path | str, model: Recommender, item_ids: Any, user_ids: Any,
                seen: sp.csr_matrix | None = None, *, popularity: np.ndarray | None = None,
                costs: np.ndarray | None = None, cold_start: ColdStartModel | None = None,
                manifest: dict[str, Any] | None = None, runtimes: np.ndarray | None = None,
                confidence_weights: ConfidenceWeights | None = None) -> Path:
    """Write a bundle. ``user_ids`` must be sorted ascending and match the model's user rows;
    ``seen`` defaults to the model's training matrix. Missing popularity/cold-start lists are
    derived from ``seen``; missing costs are zeros. Returns the directory."""
    t0 = time.perf_counter()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    seen = sp.csr_matrix(seen if seen is not None else model.user_items, dtype=np.float32)
    user_ids = np.asarray(user_ids, dtype=np.int64)
    item_ids = np.asarray([str(i) for i in item_ids])
    if user_ids.size and np.any(np.diff(user_ids) <= 0):
        raise ValueError("user_ids must be strictly increasing (user row = searchsorted position)")
    if seen.shape != (user_ids.size, item_ids.size):
        raise ValueError(f"seen matrix {seen.shape} != (users {user_ids.size}, items {item_ids.size})")
    if popularity is None:
        popularity = _normalised_counts(seen)
    if costs is None:
        costs = np.zeros(item_ids.size, dtype=np.float32)
    costs = np.asarray(costs, dtype=np.float32)
    if costs.shape != (item_ids.size,) or np.any((costs < 0) | (costs > 1)):
        raise ValueError("costs must be one value in 0..1 per item")
    if cold_start is None:
        cold_start = ColdStartModel().fit(seen)
    model.save(d / "model")
    np.save(d / "item_ids.npy", item_ids)
    np.save(d / "user_ids.npy", user_ids.astype(np.int32) if user_ids.size and np.iinfo(
        np.int32).min <= user_ids[0] and user_ids[-1] <= np.iinfo(np.int32).max else user_ids)
    np.save(d / "seen_indptr.npy", seen.indptr.astype(
        np.int32 if seen.nnz <= np.iinfo(np.int32).max else np.int64))
    np.save(d / "seen_indices.npy", seen.indices.astype(
        np.uint16 if item_ids.size <= np.iinfo(np.uint16).max + 1 else np.int32))
    np.save(d / "seen_confidence.npy", seen.data.astype(np.float32))
    np.save(d / "popularity.npy", np.asarray(popularity, dtype=np.float32))
    np.save(d / "costs.npy", costs)
    rt = np.full(item_ids.size, np.nan, np.float32) if runtimes is None else np.asarray(runtimes, np.float32)
    if rt.shape != (item_ids.size,):
        raise ValueError("runtimes must be one value per item")
    np.save(d / "runtimes.npy", rt)
    (d / "cold_start.json").write_text(json.dumps({"lists": cold_start.lists}, sort_keys=True))
    info = dict(manifest or {})
    info.setdefault("format", BUNDLE_FORMAT)
    info.setdefault("model_type", model.model_type)
    info.setdefault("version", "")
    info.setdefault("snapshot", {"id": None, "hash": None})
    info.setdefault("code_version", None)
    info.setdefault("config", {})
    info.setdefault("metrics", {})
    info.setdefault("timings", {})
    info["confidence"] = asdict(confidence_weights or ConfidenceWeights())
    info.setdefault("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
    info["counts"] = {"users": int(user_ids.size), "items": int(item_ids.size),
                      "interactions": int(seen.nnz)}
    info["timings"] = {**info["timings"], "bundle_write_s": round(time.perf_counter() - t0, 4)}
    write_manifest(d, info)
    return d


def write_manifest(directory: Path | str, manifest: dict[str, Any]) -> None:
    Path(directory, MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))


def read_manifest(directory: Path | str) -> dict[str, Any]:
    return json.loads(Path(directory, MANIFEST).read_text())


HASHES = "hashes.json"
# written after registration (registry bookkeeping, erasure markers): not part of the model
_UNHASHED = {HASHES, "registry.json", "erasure.json"}


class BundleIntegrityError(Exception):
    """A registered bundle's file is missing or differs from its hash at registration."""


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_hashes(directory: Path | str) -> dict[str, str]:
    """sha256 of every file of the bundle (``hashes.json``), taken when it is registered."""
    d = Path(directory)
    hashes = {str(p.relative_to(d)): _sha256(p) for p in sorted(d.rglob("*"))
              if p.is_file() and p.name not in _UNHASHED}
    (d / HASHES).write_text(json.dumps(hashes, indent=1, sort_keys=True))
    return hashes


def verify_hashes(directory: Path | str) -> int:
    """Check every file against ``hashes.json`` (registered bundles); returns files checked
    (0 for a bundle that was never registered). Raises :class:`BundleIntegrityError`."""
    d = Path(directory)
    path = d / HASHES
    if not path.is_file():
        return 0
    hashes = json.loads(path.read_text())
    for name, expected in hashes.items():
        file = d / name
        if not file.is_file():
            raise BundleIntegrityError(f"bundle {d}: {name} is missing (listed in {HASHES})")
        if _sha256(file) != expected:
            raise BundleIntegrityError(f"bundle {d}: {name} does not match its sha256 at "
                                       "registration (modified or corrupt); not loaded")
    return len(hashes)


def load_bundle(directory: Path | str, mmap: bool = True, verify: bool = True) -> Bundle:
    """Load a bundle (arrays memory-mapped by default; the model gets the seen matrix). A
    registered bundle's files are first checked against their hashes at registration
    (``verify``)."""
    d = Path(directory)
    if not (d / MANIFEST).is_file():
        raise FileNotFoundError(f"not a bundle (no {MANIFEST}): {d}")
    if verify:
        verify_hashes(d)
    manifest = read_manifest(d)
    mode = "r" if mmap else None

    def arr(name: str) -> np.ndarray:
        return np.load(d / name, mmap_mode=mode, allow_pickle=False)

    item_ids = np.load(d / "item_ids.npy", allow_pickle=False)
    user_ids = arr("user_ids.npy")
    seen_indptr, seen_indices = arr("seen_indptr.npy"), arr("seen_indices.npy")
    seen_data = arr("seen_confidence.npy")
    model = load_model(d / "model", mmap=mmap)
    popularity = arr("popularity.npy")
    cold = ColdStartModel()
    cold.n_items = int(item_ids.shape[0])
    cold.popularity = popularity
    cold.lists = json.loads((d / "cold_start.json").read_text())["lists"]
    cold.lists.setdefault(ALL_USERS, [])
    bundle = Bundle(path=d, manifest=manifest, model=model, item_ids=item_ids, user_ids=user_ids,
                    seen_indptr=seen_indptr, seen_indices=seen_indices, seen_data=seen_data,
                    popularity=popularity, costs=arr("costs.npy"), cold_start=cold,
                    runtimes=arr("runtimes.npy") if (d / "runtimes.npy").is_file() else None)
    model.attach_seen(lambda: bundle.seen)
    return bundle

