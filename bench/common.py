"""What every benchmark writes: bench/results/<name>.json with figures, machine, date and targets."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, figures: dict, targets: dict[str, bool],
                 path: Path | str | None = None) -> Path:
    """Write ``bench/results/<name>.json`` (or ``path``) and return its path.

    The machine's 1-minute load average is recorded too: on a shared machine it says how far
    the absolute figures can be trusted (ratios to a same-run baseline are the stable ones)."""
    payload = {
        **figures,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "targets": targets,
    }
    path = Path(path) if path is not None else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path
