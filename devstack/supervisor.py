"""Start, watch and stop the platform's processes (demo, drills, benchmarks).

Every child runs in its own process group with its output in a log file; ``stop_all`` ends them
all (SIGTERM, then SIGKILL after a grace period) and is registered for interpreter exit and
SIGTERM/SIGINT, so nothing is left running whatever way the parent ends.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack.ports import wait_for_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    restart: bool = False  # restarted by the supervisor's watchdog when it dies unasked
    restarts: int = 0
    stopping: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Supervisor:
    """Owns child processes; use as a context manager.

    Children started with ``restart=True`` are brought back by a watchdog thread when they die
    without being asked to (what a Deployment's restart policy does on Kubernetes).
    """

    def __init__(self, log_dir: Path | str, watch_interval: float = 0.5) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, Child] = {}
        self._installed = False
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._watch_interval = watch_interval
        self._watchdog: threading.Thread | None = None

    def _install_handlers(self) -> None:
        if self._installed:
            return
        self._installed = True
        atexit.register(self.stop_all)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_all()
        raise SystemExit(128 + signum)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path | None = None, restart: bool = False) -> Child:
        """Start ``argv`` (``python`` is replaced by this interpreter) as child ``name``."""
        self._install_handlers()
        with self._lock:
            if name in self.children and self.children[name].alive():
                raise RuntimeError(f"{name} is already running (pid {self.children[name].pid})")
            argv = [sys.executable if a == "python" else a for a in argv]
            log_path = self.log_dir / f"{name}.log"
            child = Child(name, list(argv), log_path, self._spawn(argv, log_path, env, cwd),
                          env or {}, cwd, restart)
            self.children[name] = child
        if restart and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="supervisor-watchdog",
                                              daemon=True)
            self._watchdog.start()
        return child

    @staticmethod
    def _spawn(argv: list[str], log_path: Path, env: dict[str, str] | None,
               cwd: Path | None) -> subprocess.Popen:
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log_path, "ab") as log:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd or ROOT, env=full_env,
                                    start_new_session=True)

    def _watch(self) -> None:
        while not self._closing.wait(self._watch_interval):
            with self._lock:
                for child in self.children.values():
                    if child.restart and not child.stopping and not child.alive():
                        with open(child.log_path, "ab") as log:
                            log.write(f"\n[supervisor] exited with {child.process.returncode}; "
                                      "restarting\n".encode())
                        child.process = self._spawn(child.argv, child.log_path, child.env, child.cwd)
                        child.restarts += 1

    def wait_http(self, name: str, url: str, timeout: float = 60.0,
                  ok: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200) -> None:
        """Wait until ``url`` answers ``ok``; fail early with the log tail if the child died."""
        child = self.children[name]
        deadline = time.monotonic() + timeout
        while True:
            if not child.alive():
                raise RuntimeError(f"{name} exited with {child.process.returncode}:\n{child.log_tail()}")
            try:
                if ok(httpx.get(url, timeout=2.0)):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {url} not ready after {timeout}s:\n{child.log_tail()}")
            time.sleep(0.2)

    def wait_port(self, name: str, port: int, timeout: float = 60.0) -> None:
        child = self.children[name]
        deadline = time.monotonic() + timeout
        while not wait_for_port("127.0.0.1", port, timeout=0.5):
            if not child.alive():
                raise RuntimeError(f"{name} exited with {child.process.returncode}:\n{child.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: port {port} not open after {timeout}s")

    def signal(self, name: str, sig: int) -> None:
        child = self.children[name]
        if child.alive():
            os.killpg(child.pid, sig)

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group of ``name`` (a crash, for drills); a child with
        ``restart=True`` is then brought back by the watchdog."""
        child = self.children[name]
        process = child.process
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def stop(self, name: str, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        child = self.children.get(name)
        if child is None:
            return None
        child.stopping = True
        if child.alive():
            try:
                os.killpg(child.pid, signal.SIGTERM)
                child.process.wait(grace)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.kill(name)
        # the group may hold grandchildren (e.g. uvicorn workers)
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return child.process.wait()

    def stop_all(self, grace: float = 15.0) -> None:
        self._closing.set()
        for child in self.children.values():
            child.stopping = True
        for name in reversed(list(self.children)):
            self.stop(name, grace)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
