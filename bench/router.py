"""Router overhead: p50/p99 of GET /recommend/<uid> direct to a model server vs through the
experiment router (`python -m experiments router`, real process), same client, same run.

    .venv/bin/python bench/router.py [--quick]

Seven interleaved rounds (direct, router, direct, router, ...); per round the p50 and p99 of
each path and what the router adds; the median and spread over rounds. Writes
bench/results/router.json. Target (issue 8): the router adds < 2 ms at the median p50.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import spread, write_result  # noqa: E402
from devstack.ports import free_port, wait_for_port  # noqa: E402

# A stand-in model server: fixed 20-id list, keep-alive, as cheap as a Python server gets.
UPSTREAM = r"""
import socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = ",".join(f"movie+{i}+2000" for i in range(20)).encode()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup(); self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, *a): pass
    def do_GET(self):
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Model-Version: v1\r\n"
                         b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
s = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H); s.daemon_threads = True
s.serve_forever()
"""


def measure(port: int, n: int, header: dict[str, str] | None = None) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    out = []
    for i in range(n):
        t = time.perf_counter()
        conn.request("GET", f"/recommend/{i % 5000}", headers=header or {})
        resp = conn.getresponse()
        resp.read()
        out.append((time.perf_counter() - t) * 1000)
        assert resp.status == 200, resp.status
    conn.close()
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 500 if args.quick else 5000
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    up_a, up_b, rport = free_port(), free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, "-c", UPSTREAM, str(p)]) for p in (up_a, up_b)]
    state = tempfile.mkdtemp(prefix="bench-router-")
    procs.append(subprocess.Popen([
        sys.executable, "-m", "experiments", "router", f"serving.http_port={rport}",
        "experiments.name=bench", f"experiments.state_dir={state}",
        f"experiments.variants=[{{name:champion,weight:50,urls:[http://127.0.0.1:{up_a}]}},"
        f"{{name:challenger,weight:50,urls:[http://127.0.0.1:{up_b}]}}]",
    ], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        for p in (up_a, up_b, rport):
            if not wait_for_port("127.0.0.1", p, 30):
                raise SystemExit(f"port {p} never opened")
        measure(up_a, 200)
        measure(rport, 200)  # warm up both paths
        # interleaved rounds (direct, router, direct, router, ...): both see the same load
        rounds = []
        for _ in range(7):
            direct = measure(up_a, n // 7)
            routed = measure(rport, n // 7)
            rounds.append({"direct_p50": pct(direct, 50), "direct_p99": pct(direct, 99),
                           "router_p50": pct(routed, 50), "router_p99": pct(routed, 99)})
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
    per = {k: spread([r[k] for r in rounds]) for k in rounds[0]}
    added_p50 = spread([r["router_p50"] - r["direct_p50"] for r in rounds])
    added_p99 = spread([r["router_p99"] - r["direct_p99"] for r in rounds])
    figures = {
        "requests_per_path": (n // 7) * 7, "rounds": len(rounds),
        **{f"{k}_ms": v for k, v in per.items()},
        "added_p50_ms": added_p50, "added_p99_ms": added_p99,
    }
    ok = added_p50["median"] < 2.0
    out = write_result("router", figures, {"median added p50 < 2 ms": ok}, quick=args.quick)
    for k, v in (("direct p50", per["direct_p50"]), ("router p50", per["router_p50"]),
                 ("added  p50", added_p50), ("added  p99", added_p99)):
        print(f"{k}: {v['median']:.3f} ms (rounds {v['min']:.3f} … {v['max']:.3f})")
    print(f"target < 2 ms added at p50: {'met' if ok else 'NOT met'} -> {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
