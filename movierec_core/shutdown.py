"""Stop an HTTP server's ``serve_forever`` on SIGTERM, the way Kubernetes stops a pod.

Kubernetes sends SIGTERM and waits out the grace period (30 s by default) before SIGKILL; a
server that leaves SIGTERM to Python's default action dies at once with -15 (in-flight requests
cut, its ``finally`` blocks skipped), and one that ignores it holds every rollout up for the
whole grace period. ``StopOnSigterm`` finishes the request loop and returns from ``serve``, so
the caller's clean-up runs and the process exits 0.

Create it *before* the server binds its socket: a SIGTERM that comes as soon as the port
answers (a rollout, a probe that gave up) must not meet the default action. One that comes
before ``serve`` is remembered, and ``serve`` then returns at once::

    stop = StopOnSigterm()
    server = ThreadingHTTPServer(address, Handler)
    try:
        stop.serve(server)
    finally:
        server.server_close()
"""

from __future__ import annotations

import signal
import threading
from socketserver import BaseServer
from typing import Any

__all__ = ["StopOnSigterm"]


class StopOnSigterm:
    """Installs a SIGTERM handler (main thread only) that shuts down the server given to
    :meth:`serve`, or makes :meth:`serve` return at once when the signal came first."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._servers: list[BaseServer] = []
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, *_: Any) -> None:
        self._stopping.set()
        for server in self._servers:
            # shutdown() waits for serve_forever to return, which is this (main) thread's job:
            # it has to run elsewhere. Daemon: a server stopped before serve_forever ran never
            # reports that it is shut down.
            threading.Thread(target=server.shutdown, daemon=True).start()

    def serve(self, server: BaseServer, poll_interval: float = 0.5) -> None:
        """``server.serve_forever`` until SIGTERM; returns at once if it came already."""
        self._servers.append(server)
        if not self._stopping.is_set():  # a SIGTERM before the append never called shutdown()
            server.serve_forever(poll_interval=poll_interval)
