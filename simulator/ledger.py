"""What the simulator produced, exactly: the reference consumers reconcile against.

``valid[kind]`` counts distinct valid lines per :class:`~movierec_core.events.EventKind`
(``watch``, ``rate``, ``account``, ``recommend``); ``invalid[kind]`` counts injected invalid
lines per :class:`~movierec_core.invalid.InvalidKind`; ``duplicates`` counts extra deliveries
of valid lines (byte-identical copies). Valid lines are distinct by construction (one watch line
per user per simulated minute, at most one request / rating / sign-up per user per minute) and
invalid lines are kept distinct (``invalid_repeats`` counts the rare byte-identical repeats of an
invalid line, when a kind's few shapes are used up), so a consumer that dedupes by raw bytes must end with exactly
``valid`` rows in the lake and ``invalid`` dead letters, and drop exactly ``duplicates``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Ledger:
    valid: Counter = field(default_factory=Counter)
    invalid: Counter = field(default_factory=Counter)
    duplicates: int = 0
    invalid_repeats: int = 0
    first_time: str = ""
    last_time: str = ""
    drift: list[dict[str, Any]] = field(default_factory=list)

    @property
    def valid_total(self) -> int:
        return sum(self.valid.values())

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values())

    @property
    def lines_total(self) -> int:
        """Every line delivered: valid + invalid + duplicate copies."""
        return self.valid_total + self.invalid_total + self.duplicates

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": dict(sorted(self.valid.items())),
            "invalid": dict(sorted(self.invalid.items())),
            "duplicates": self.duplicates,
            "invalid_repeats": self.invalid_repeats,
            "valid_total": self.valid_total,
            "invalid_total": self.invalid_total,
            "lines_total": self.lines_total,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "drift": self.drift,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        return cls(Counter(data.get("valid", {})), Counter(data.get("invalid", {})),
                   int(data.get("duplicates", 0)), int(data.get("invalid_repeats", 0)),
                   data.get("first_time", ""),
                   data.get("last_time", ""), list(data.get("drift", [])))

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> Ledger:
        return cls.from_dict(json.loads(Path(path).read_text()))
