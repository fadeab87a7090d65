"""StopOnSigterm: a SIGTERM ends serve_forever (or, when it came first, skips it)."""

from __future__ import annotations

import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from movierec_core.shutdown import StopOnSigterm


@pytest.fixture
def restore_sigterm():
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def _server() -> ThreadingHTTPServer:
    return ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)


def test_a_sigterm_while_serving_returns_from_serve(restore_sigterm) -> None:
    stop = StopOnSigterm()
    server = _server()
    served = threading.Event()
    server.service_actions = served.set  # called on each turn of serve_forever's loop
    threading.Thread(target=lambda: served.wait(10) and os.kill(os.getpid(), signal.SIGTERM),
                     daemon=True).start()
    fell_back = []  # a broken handler fails the test instead of hanging it
    fallback = threading.Timer(30, lambda: fell_back.append(1) or server.shutdown())
    fallback.start()
    try:
        stop.serve(server, poll_interval=0.05)
    finally:
        fallback.cancel()
        server.server_close()
    assert served.is_set() and fell_back == []


def test_a_sigterm_before_the_server_exists_makes_serve_return_at_once(restore_sigterm) -> None:
    stop = StopOnSigterm()
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before os.kill returns (main thread)
    server = _server()
    calls = []
    server.serve_forever = lambda **kw: calls.append(kw)
    stop.serve(server)
    server.server_close()
    assert calls == []
