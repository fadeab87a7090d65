"""Test helpers: tiny real HTTP servers standing in for model servers, a router on a free port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from experiments.router import ExperimentState, Router, RouterHTTPServer, Variant


def serve_in_background(server: ThreadingHTTPServer) -> str:
    """Serve on a daemon thread (fast shutdown polling); returns the base URL."""
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


class FakeModelServer:
    """``GET /recommend/<uid>`` → a fixed list and ``X-Model-Version``; counts its hits."""

    def __init__(self, movies: Sequence[str], version: str, status: int = 200) -> None:
        self.body = ",".join(movies).encode()
        self.version, self.status, self.hits = version, status, 0
        self.connections: list = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                outer.connections.append(self.connection)

            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                self.send_response(outer.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("X-Model-Version", outer.version)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = serve_in_background(self.server)

    def stop(self) -> None:
        """Like a killed process: the listener and every open connection go away."""
        self.server.shutdown()
        self.server.server_close()
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


class RunningRouter:
    def __init__(self, experiment: str, variants: Sequence[tuple[str, float, list[str]]],
                 fallback: str = "", **server_options) -> None:
        state = ExperimentState(experiment, [Variant(n, w, list(u)) for n, w, u in variants],
                                fallback=fallback)
        self.router = Router(state, timeout_s=0.5)
        self.server = RouterHTTPServer(("127.0.0.1", 0), self.router, **server_options)
        self.url = serve_in_background(self.server)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.router.close()
