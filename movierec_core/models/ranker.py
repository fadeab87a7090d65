"""The second stage: a LightGBM LambdaMART model over :mod:`movierec_core.features`, stored in a
factor model's bundle next to the item table it reads (issue 22). Trained by
:mod:`trainer.ranker`; used by :class:`model_server.engine.Engine`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from movierec_core.features import ItemTable, feature_names

RANKER_FILE = "ranker.txt"
RANKER_META = "ranker.json"


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


@dataclass
class Ranker:
    """A LightGBM booster with its feature list, candidate count and the item table."""

    booster: Any
    items: ItemTable
    meta: dict[str, Any]

    @property
    def candidates(self) -> int:
        return int(self.meta.get("candidates", 50))

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(rows, num_threads=1), dtype=np.float64)

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
