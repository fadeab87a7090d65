"""The second stage: a LightGBM LambdaMART model over :mod:`movierec_core.features`, stored in a
factor model's bundle next to the item table it reads (issue 22). Trained by
:mod:`trainer.ranker`; used by :class:`model_server.engine.Engine`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from ctypes import POINTER, c_double
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from movierec_core.features import ItemTable, feature_names

RANKER_FILE = "ranker.txt"
RANKER_META = "ranker.json"

log = logging.getLogger(__name__)

KEEP_COMPILED = 8  # compiled rankers kept in a cache directory (~0.6 MB for 200 trees)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed by another process meanwhile
        return 0.0


def exploring(user_ids: Any, share: float, salt: int) -> np.ndarray:
    """Whether each user is in the exploration cohort: a fixed ``share`` of users (by a salted
    hash of their id, the pseudonym where ids are pseudonymised) whose served lists are shuffled,
    so that a movie's position says nothing about it there. The trainer reads position bias off
    their requests; the model server shuffles for them. Same function on both sides."""
    ids = np.atleast_1d(np.asarray(user_ids, dtype=np.int64)).astype(np.uint64)
    mixed = (ids ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)) * np.uint64(0x9E3779B97F4A7C15)
    mixed ^= mixed >> np.uint64(29)
    mixed *= np.uint64(0xBF58476D1CE4E5B9)
    unit = (mixed >> np.uint64(11)).astype(np.float64) / 2.0**53
    return unit < float(share)


class CompiledTrees:
    """lleaves' machine code for the trees, called directly with per-thread float64 buffers.
    lleaves 1.3's ``predict`` checks and converts its input, allocates the output and builds
    two ctypes pointers on every call (measured for 50 rows: ~68 us through ``predict``, ~43 us
    direct);
    here a call copies the rows into this thread's buffer and runs the compiled loop. The
    same function and arguments as lleaves' one-thread path, so the same scores; ``model``'s
    own ``predict`` where that path does not apply (fp32 code, several classes)."""

    def __init__(self, model: Any, n_features: int) -> None:
        self.model = model
        self.n_features = int(n_features)
        direct = (getattr(model, "use_fp64", False) and getattr(model, "_n_classes", 0) == 1
                  and getattr(model, "_c_entry_func", None) is not None)
        self._entry = model._c_entry_func if direct else None
        self._local = threading.local()

    def predict(self, rows: np.ndarray, n_jobs: int = 1) -> np.ndarray:
        rows = np.asarray(rows)
        if self._entry is None or rows.ndim != 2 or not 0 < rows.shape[0] < 2**31 - 1:
            return self.model.predict(rows, n_jobs=n_jobs)
        if rows.shape[1] != self.n_features:
            raise ValueError(f"Data must be of dimension (N, {self.n_features}), "
                             f"is {rows.shape}.")
        n = rows.shape[0]
        buffers = getattr(self._local, "buffers", None)
        if buffers is None or buffers[0].shape[0] < n:
            x = np.empty((max(n, 64), self.n_features), np.float64)
            y = np.empty(x.shape[0], np.float64)
            buffers = self._local.buffers = (x, y, x.ctypes.data_as(POINTER(c_double)),
                                             y.ctypes.data_as(POINTER(c_double)))
        x, y, x_ptr, y_ptr = buffers
        x[:n] = rows  # float32 rows widen exactly, as lleaves' own conversion does
        self._entry(x_ptr, y_ptr, 0, n)
        return y[:n].copy()


@dataclass
class Ranker:
    """A LightGBM booster with its feature list, candidate count and the item table."""

    booster: Any
    items: ItemTable
    meta: dict[str, Any]
    # the trees as machine code (:meth:`compile`); None: LightGBM's own predict scores
    compiled: Any = field(default=None, repr=False, compare=False)

    @property
    def candidates(self) -> int:
        return int(self.meta.get("candidates", 50))

    def score(self, rows: np.ndarray) -> np.ndarray:
        """The raw score of each row (LambdaMART: higher is better). Compiled, the same values
        as LightGBM's to float64 rounding (the trees are summed in another order)."""
        compiled = self.compiled  # one read: a compile finishing meanwhile swaps it whole
        if compiled is not None:
            return compiled.predict(rows, n_jobs=1)
        return np.asarray(self.booster.predict(rows, num_threads=1), dtype=np.float64)

    def compile(self, cache_dir: Path | str | None = None) -> float:
        """Compile the trees to machine code for this CPU with lleaves (LLVM), so that
        :meth:`score` costs ~0.1 ms instead of ~0.5 ms for 50 rows x 200 trees: LightGBM's
        predict parses its parameters and sets up a predictor on every call (~0.15 ms even for
        one row). The object code is kept in ``cache_dir`` (default: the temp dir's
        ``movierec-compiled``), keyed by the model text, lleaves' version and the host CPU, so
        another process or a restart loads it instead of compiling again (~15 s for 200 trees).
        Returns the seconds it took; raises when lleaves cannot compile the model (the caller
        keeps LightGBM's predict then)."""
        from importlib.metadata import version

        import lleaves
        import llvmlite.binding as llvm

        started = time.perf_counter()
        text = self.booster.model_to_string()
        llvm.initialize()
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        try:
            features = llvm.get_host_cpu_features().flatten()
        except RuntimeError:
            features = ""
        key = hashlib.sha256("\0".join([text, version("lleaves"), llvm.get_host_cpu_name(),
                                         features]).encode()).hexdigest()[:32]
        cache = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "movierec-compiled"
        cache.mkdir(parents=True, exist_ok=True)
        obj = cache / f"ranker-{key}.o"
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            source = Path(tmp) / RANKER_FILE  # lleaves reads a model file
            source.write_text(text)
            model = lleaves.Model(model_file=str(source))
            if obj.is_file():
                model.compile(cache=str(obj))
            else:
                # written under a name of its own, then renamed: a process that loads the cache
                # never reads a half-written object
                partial = Path(tmp) / "ranker.o"
                model.compile(cache=str(partial))
                os.replace(partial, obj)
        obj.touch()  # in use: the newest are kept
        for old in sorted(cache.glob("ranker-*.o"), key=_mtime, reverse=True)[KEEP_COMPILED:]:
            old.unlink(missing_ok=True)  # one per model version: a server swaps many in a day
        self.compiled = CompiledTrees(model, self.booster.num_feature())
        return time.perf_counter() - started

    def save(self, directory: Path | str) -> None:
        d = Path(directory)
        self.booster.save_model(str(d / RANKER_FILE))
        self.items.save(d)
        (d / RANKER_META).write_text(json.dumps(self.meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path | str) -> Ranker:
        import lightgbm as lgb

        d = Path(directory)
        meta = json.loads((d / RANKER_META).read_text())
        if meta.get("features") != feature_names():
            raise ValueError(f"{d}: the ranker was trained on features {meta.get('features')}, "
                             f"this code computes {feature_names()}: retrain it")
        return cls(lgb.Booster(model_file=str(d / RANKER_FILE)), ItemTable.load(d), meta)

    @staticmethod
    def present(directory: Path | str) -> bool:
        return (Path(directory) / RANKER_FILE).is_file()
