"""An append-only file that rotates past a size: what every pod's log-like file needs.

On Kubernetes these files live in size-limited emptyDir volumes; a file that grows without
bound gets the pod evicted. ``RotatingFile`` keeps ``path`` plus ``backups`` older files
(``path.1`` the newest of them), each rotated before a write would take it past ``max_bytes``;
a write is never split across files. ``max_bytes=0`` never rotates.
"""

from __future__ import annotations

import threading
from pathlib import Path


class RotatingFile:
    def __init__(self, path: str | Path, max_bytes: int = 0, backups: int = 2) -> None:
        if max_bytes < 0 or backups < 0:
            raise ValueError("max_bytes and backups must be >= 0")
        self.path = Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.backups, 0, -1):
            newer = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            if newer.exists():
                newer.replace(self.path.with_name(f"{self.path.name}.{i}"))
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole lines) and flush; rotate first when it would not fit."""
        with self._lock:
            if self._file.closed:
                return
            size = self._file.tell()
            if self.max_bytes and size and size + len(data) > self.max_bytes:
                self._rotate()
            self._file.write(data)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
