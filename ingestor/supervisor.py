"""``ingestor.workers=N``: N consumer processes of one group on one machine.

Each worker is a full ingestor (``python -m ingestor ingestor.workers=1``); the group splits
the partitions between them, and the lake/DLQ dedupe makes them safe to run side by side
(the same as several pods). The supervisor forwards SIGTERM/SIGINT, restarts a worker that
dies (with backoff), and exits 0 once every worker exited 0.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger("ingestor.supervisor")


def _spawn(i: int, overrides: list[str], metrics_port: int) -> subprocess.Popen:
    port = metrics_port + i if metrics_port else 0
    cmd = [sys.executable, "-m", "ingestor", "run", *overrides, "ingestor.workers=1",
           f"ingestor.metrics_port={port}"]
    return subprocess.Popen(cmd)


def supervise(workers: int, overrides: list[str], metrics_port: int) -> int:
    overrides = [o for o in overrides
                 if not o.startswith(("ingestor.workers=", "ingestor.metrics_port="))]
    procs = {i: _spawn(i, overrides, metrics_port) for i in range(workers)}
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    backoff: dict[int, float] = {i: 1.0 for i in procs}
    finished: set[int] = set()
    while len(finished) < len(procs):
        time.sleep(0.2)
        for i, proc in list(procs.items()):
            if i in finished or proc.poll() is None:
                continue
            if proc.returncode == 0 or stopping:
                finished.add(i)
                continue
            log.warning("ingestor worker %d exited with %s; restarting in %.0fs", i,
                        proc.returncode, backoff[i])
            time.sleep(backoff[i])
            backoff[i] = min(backoff[i] * 2, 30.0)
            procs[i] = _spawn(i, overrides, metrics_port)
    codes = [p.returncode for p in procs.values()]
    return 0 if all(c == 0 for c in codes) or stopping else max(codes)
