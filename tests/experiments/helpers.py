"""Test helpers: tiny real HTTP servers standing in for model servers, a reference join."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from experiments.router import ExperimentState, Router, RouterHTTPServer, Variant
from movierec_core.events import RecommendationRequest, WatchMinute


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
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

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
                 fallback: str = "") -> None:
        state = ExperimentState(experiment, [Variant(n, w, list(u)) for n, w, u in variants],
                                fallback=fallback)
        self.router = Router(state, timeout_s=0.5)
        self.server = RouterHTTPServer(("127.0.0.1", 0), self.router)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.router.close()


def reference_join(
    requests: Sequence[RecommendationRequest], watches: Iterable[WatchMinute], window_s: float,
    costs: Mapping[str, float] | None = None,
) -> list[tuple[bool, int, int, float]]:
    """Brute-force join used to test the grouping only (the product join is
    movierec_core.watch_through)."""
    costs = costs or {}
    by_user: dict[int, list[WatchMinute]] = {}
    for w in watches:
        by_user.setdefault(w.user_id, []).append(w)
    out = []
    for r in requests:
        shown = set(r.movie_ids)
        end = r.time + timedelta(seconds=window_s)
        hits = [w for w in by_user.get(r.user_id, []) if r.time < w.time <= end and w.movie_id in shown]
        movies = {w.movie_id for w in hits}
        out.append((bool(hits), len({(w.movie_id, w.minute) for w in hits}), len(movies),
                    sum(costs.get(m, 0.0) for m in movies)))
    return out
