"""Test helpers: independent expected answers, a stub metadata API, the server process."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from devstack.ports import free_port
from devstack.supervisor import Supervisor
from movierec_core.models.bundle import load_bundle


def expected_known(bundle_dir: Path, user_id: int, k: int = 20, extra_seen: tuple[str, ...] = (),
                   cost_lambda: float = 0.0) -> list[str]:
    """The list a known user must get, computed straight from the bundle's arrays."""
    b = load_bundle(bundle_dir, mmap=False)
    row = b.user_row(user_id)
    scores = np.asarray(b.model.item_factors) @ np.asarray(b.model.user_factors[row])
    scores = scores.astype(np.float32) - np.float32(cost_lambda) * np.asarray(b.costs)
    seen = set(int(i) for i in b.seen_items(row)) | {b.item_index(m) for m in extra_seen}
    order = sorted((i for i in range(b.n_items) if i not in seen), key=lambda i: (-scores[i], i))
    return b.movie_ids(order[:k])


def expected_fold_in(bundle_dir: Path, user_id: int, watched: dict[str, float],
                     k: int = 20) -> list[str]:
    """The list after folding ``watched`` (movie id → confidence) into the user's training row
    with the model's own fold-in (implicit's recalculate_user for ALS)."""
    b = load_bundle(bundle_dir, mmap=False)
    row = b.user_row(user_id)
    dense = b.seen[row].toarray()[0] if row is not None else np.zeros(b.n_items, np.float32)
    for movie, conf in watched.items():
        i = b.item_index(movie)
        dense[i] = max(dense[i], conf)
    scores = np.asarray(b.model.scores_for_items(sp.csr_matrix(dense[None, :])), np.float32)
    seen = set(np.flatnonzero(dense))
    order = sorted((i for i in range(b.n_items) if i not in seen), key=lambda i: (-scores[i], i))
    return b.movie_ids(order[:k])


def expected_popularity(bundle_dir: Path, k: int = 20, seen: tuple[int, ...] = ()) -> list[str]:
    b = load_bundle(bundle_dir, mmap=False)
    pop = np.asarray(b.popularity)
    order = sorted((i for i in range(b.n_items) if i not in seen), key=lambda i: (-pop[i], i))
    return b.movie_ids(order[:k])


class StubMetadataApi:
    """``GET /user/<id>`` from a dict (404 otherwise), like EVENTS.md's metadata API."""

    def __init__(self, users: dict[int, dict]) -> None:
        users_ = users

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.strip("/").split("/")
                record = None
                if len(parts) == 2 and parts[0] == "user" and parts[1].isdigit():
                    record = users_.get(int(parts[1]))
                body = json.dumps(record or {"message": "unknown user"}).encode()
                self.send_response(200 if record else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StubMetadataApi:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def model_server_process(overrides: list[str], log_dir: Path,
                         timeout_s: float = 90.0) -> Iterator[str]:
    """``python -m model_server <overrides>`` on a free port; yields its base URL once ready
    (log: ``<log_dir>/model_server.log``)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Supervisor(log_dir) as supervisor:
        supervisor.start("model_server", ["python", "-m", "model_server",
                                          f"serving.http_port={port}", *overrides],
                         env={"OPENBLAS_NUM_THREADS": "1"})
        supervisor.wait_http("model_server", f"{base}/v2/models/movierec/ready", timeout_s)
        yield base
