"""Model server throughput and latency against a bare KServe ModelServer, same machine, same run.

    .venv/bin/python bench/serve.py [--quick]

Full size: a 1,000,000-user x 20,000-movie x 64-factor ALS bundle (synthetic factors, 8 seen
movies per user, memory-mapped), served by ``python -m model_server`` with the online store on.
Load from ``wrk`` (Debian package; ``make -f mk/model_server.mk wrk`` installs it) with random user
ids (~95 % known, ~5 % cold starts): closed loop at c=16, then ~1,000 req/s (per-connection
pacing). The baseline is a bare ``kserve.ModelServer`` whose ``predict`` does nothing, loaded
by the same generator on ``POST /v1/models/bare:predict``. Prints rps, p50/p99, the ratio to the
bare server and the server's RSS; writes bench/results/serve.json.

Targets (issue 7): ratio_to_bare_server >= 0.8, p99_ms_at_1000_rps <= 10,
rss_bytes <= 2 x factor bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import write_result  # noqa: E402
from devstack.ports import free_port, wait_for_port  # noqa: E402

CACHE = REPO / ".cache" / "bench-serve"

BARE_SERVER = textwrap.dedent('''
    import logging, sys
    import kserve

    class Bare(kserve.Model):
        def __init__(self):
            super().__init__("bare")
            self.ready = True

        async def predict(self, payload, headers=None):
            return {"predictions": []}

    if __name__ == "__main__":
        server = kserve.ModelServer(http_port=int(sys.argv[1]), enable_grpc=False,
                                    enable_latency_logging=False)
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        server.start([Bare()])
''')

WRK_SCRIPT = '''
local max_id = {max_id}
local method = "{method}"
local path = "{path}"
local body = '{body}'
local delay_ms = {delay_ms}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  math.randomseed(1000 + (tid or 0))
end
function request()
  if method == "GET" then
    return wrk.format("GET", path .. math.random(0, max_id))
  end
  return wrk.format("POST", path, {{["Content-Type"] = "application/json"}}, body)
end
if delay_ms > 0 then
  function delay() return delay_ms end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests": %d, "duration_us": %d, "errors": %d, ' ..
    '"non_2xx": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
'''


def make_bundle(directory: Path, n_users: int, n_items: int, factors: int, seen_per_user: int,
                seed: int = 7) -> Path:
    """A synthetic ALS bundle of the given size (cached between runs)."""
    from movierec_core.models.bundle import save_bundle
    from movierec_core.models.factor import ALSModel
    from movierec_core.models.popularity import ColdStartModel

    tag = f"{n_users}x{n_items}x{factors}x{seen_per_user}"
    path = directory / tag
    if (path / "manifest.json").is_file():
        return path
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    model = ALSModel(factors=factors, regularization=0.05)
    model.user_factors = (rng.standard_normal((n_users, factors), dtype=np.float32) * 0.1)
    # a few very popular movies, a long tail (Zipf-like item norms)
    scale = (1.0 / np.sqrt(1 + np.arange(n_items, dtype=np.float32)))[:, None]
    model.item_factors = rng.standard_normal((n_items, factors), dtype=np.float32) * scale
    model.n_items = n_items
    p = scale.ravel() / scale.sum()
    indices = rng.choice(n_items, size=n_users * seen_per_user, p=p).astype(np.int32)
    indices = np.sort(indices.reshape(n_users, seen_per_user), axis=1)
    dup = np.zeros_like(indices, dtype=bool)
    dup[:, 1:] = indices[:, 1:] == indices[:, :-1]
    indices[dup] = (indices[dup] + 1 + np.arange(dup.sum()) % 97) % n_items  # rare collisions
    indices = np.sort(indices, axis=1)
    seen = sp.csr_matrix((np.ones(indices.size, np.float32), indices.ravel(),
                          np.arange(0, indices.size + 1, seen_per_user, dtype=np.int64)),
                         shape=(n_users, n_items))
    seen.sum_duplicates()
    cold = ColdStartModel(list_size=100).fit(seen)
    tmp = directory / f".{tag}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_bundle(tmp, model, [f"movie+{i}+{1950 + i % 70}" for i in range(n_items)],
                np.arange(n_users, dtype=np.int64), seen,
                costs=rng.random(n_items, dtype=np.float32), cold_start=cold,
                manifest={"version": f"bench-{tag}", "code_version": "bench",
                          "snapshot": {"id": "synthetic", "hash": None}})
    tmp.rename(path)
    print(f"bundle {tag} written in {time.perf_counter() - t0:.1f} s")
    return path


def make_store(path: Path, n_users: int, n_items: int, active_users: int, seed: int = 3) -> None:
    """An online store where ``active_users`` users watched 3 movies since the snapshot."""
    from movierec_core.events import WatchMinute
    from movierec_core.online_store import SqliteOnlineStore

    rng = np.random.default_rng(seed)
    store = SqliteOnlineStore(path)
    t = datetime(2025, 3, 2)
    users = rng.choice(n_users, size=active_users, replace=False)
    batch = []
    for u in users:
        for m in rng.choice(n_items, size=3, replace=False):
            batch += [WatchMinute(t + timedelta(minutes=int(i)), int(u),
                                  f"movie+{int(m)}+{1950 + int(m) % 70}", int(i))
                      for i in range(0, 60, 6)]
        if len(batch) > 50_000:
            store.apply(batch)
            batch = []
    store.apply(batch)
    store.close()


def rank_microbench(bundle_dir: Path, n_users: int, n_items: int) -> dict:
    """In-process cost of one ranking: stored factors vs fold-in of 3 fresh movies."""
    from types import SimpleNamespace

    from model_server.engine import Engine

    engine = Engine.load(bundle_dir)
    rng = np.random.default_rng(5)
    users = rng.integers(0, n_users, 2000)
    t0 = time.perf_counter()
    for u in users:
        engine.rank(int(u), [], 20)
    model_us = (time.perf_counter() - t0) / users.size * 1e6
    fresh = [SimpleNamespace(movie_id=engine.item_ids[int(i)], minutes=40, stars=None)
             for i in rng.integers(0, n_items, 3)]
    t0 = time.perf_counter()
    for u in users[:500]:
        engine.rank(int(u), fresh, 20)
    fold_us = (time.perf_counter() - t0) / 500 * 1e6
    t0 = time.perf_counter()
    for u in users[:500]:
        engine.rank(int(u), [], 20, cost_lambda=0.5)
    cost_us = (time.perf_counter() - t0) / 500 * 1e6
    return {"rank_us_stored_factors": round(model_us, 1), "rank_us_fold_in": round(fold_us, 1),
            "rank_us_cost_aware": round(cost_us, 1)}


def start(cmd: list[str], port: int, log: Path, ready_path: str) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        if wait_for_port("127.0.0.1", port, 0.5):
            try:
                if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def wrk(url: str, path: str, *, seconds: float, connections: int, max_id: int = 0,
        method: str = "GET", body: str = "", delay_ms: float = 0.0) -> dict:
    script = WRK_SCRIPT.format(max_id=max_id, method=method, path=path, body=body,
                               delay_ms=delay_ms)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout",
                              "2s", "-s", f.name, url], capture_output=True, text=True,
                             check=True).stdout
    finally:
        os.unlink(f.name)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    r = json.loads(line[len("WRKJSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def fmt(r: dict) -> str:
    return (f"{r['rps']:8.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f}"
            f" ms  errors {r['errors']}  non-2xx {r['non_2xx']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20K users x 2K movies, short runs")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk (make -f mk/model_server.mk wrk)")
        return 2
    n_users, n_items, factors = (20_000, 2_000, 64) if args.quick else (1_000_000, 20_000, 64)
    seconds = 4 if args.quick else 10
    rate = 1000
    CACHE.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(CACHE, n_users, n_items, factors, seen_per_user=8)
    factor_bytes = (n_users + n_items) * factors * 4
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    store = work / "online.sqlite"
    make_store(store, n_users, n_items, active_users=max(n_users // 50, 100))
    micro = rank_microbench(bundle, n_users, n_items)
    print(f"ranking in-process: {micro}")
    max_id = int(n_users * 1.05)  # ~5 % of requests are users the model has never seen
    figures: dict = {"n_users": n_users, "n_items": n_items, "factors": factors,
                     "factor_bytes": factor_bytes, "duration_s_per_run": seconds, **micro}

    # --- bare KServe server -------------------------------------------------------------
    bare_py = work / "bare_server.py"
    bare_py.write_text(BARE_SERVER)
    port = free_port()
    proc = start([sys.executable, str(bare_py), str(port)], port, work / "bare.log",
                 "/v2/models/bare/ready")
    bare_body = '{"instances": [{"user_id": 1}]}'
    try:
        url = f"http://127.0.0.1:{port}"
        wrk(url, "/v1/models/bare:predict", seconds=2, connections=16, method="POST",
            body=bare_body)
        bare = wrk(url, "/v1/models/bare:predict", seconds=seconds, connections=16,
                   method="POST", body=bare_body)
        print(f"bare ModelServer  c=16  : {fmt(bare)}")
        bare_rate = wrk(url, "/v1/models/bare:predict", seconds=seconds, connections=16,
                        method="POST", body=bare_body, delay_ms=16_000 / rate - 1)
        print(f"bare ModelServer  ~{rate}/s: {fmt(bare_rate)}")
    finally:
        stop(proc)

    # --- movierec model server ----------------------------------------------------------
    port = free_port()
    t0 = time.monotonic()
    proc = start([sys.executable, "-m", "model_server", f"serving.http_port={port}",
                  f"serving.model_dir={bundle}", f"data.online_store_path={store}",
                  f"serving.provenance_log={work / 'provenance.jsonl'}", "metadata_api.url="],
                 port, work / "server.log", "/v2/models/movierec/ready")
    load_s = time.monotonic() - t0
    try:
        url = f"http://127.0.0.1:{port}"
        import httpx

        sample = httpx.get(f"{url}/recommend/12345", timeout=5)
        assert sample.status_code == 200 and len(sample.text.split(",")) == 20, sample.text
        wrk(url, "/recommend/", seconds=2, connections=16, max_id=max_id)
        ours = wrk(url, "/recommend/", seconds=seconds, connections=16, max_id=max_id)
        print(f"model_server      c=16  : {fmt(ours)}")
        ours_rate = wrk(url, "/recommend/", seconds=seconds, connections=16, max_id=max_id,
                        delay_ms=16_000 / rate - 1)
        print(f"model_server      ~{rate}/s: {fmt(ours_rate)}")
        v1_body = '{"instances": [{"user_id": 4242, "k": 20}]}'
        ours_v1 = wrk(url, "/v1/models/movierec:predict", seconds=max(seconds // 2, 2),
                      connections=16, method="POST", body=v1_body)
        print(f"model_server V1   c=16  : {fmt(ours_v1)}")
        rss_now, rss_peak = rss(proc.pid)
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
    finally:
        stop(proc)
    fallbacks = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("movierec_model_server_fallbacks_total{"))
    ratio = ours["rps"] / bare["rps"]
    print(f"ratio to bare server: {ratio:.2f}   server RSS {rss_now / 2**20:.0f} MiB "
          f"(peak {rss_peak / 2**20:.0f} MiB; factors {factor_bytes / 2**20:.0f} MiB)   "
          f"load {load_s:.1f} s   fallbacks {fallbacks:.0f}")
    figures.update({
        "bare_rps_c16": round(bare["rps"], 1), "bare_p50_ms_c16": bare["p50_us"] / 1000,
        "bare_p99_ms_c16": bare["p99_us"] / 1000,
        "bare_rps_paced": round(bare_rate["rps"], 1), "bare_p99_ms_paced": bare_rate["p99_us"] / 1000,
        "rps_c16": round(ours["rps"], 1), "p50_ms_c16": ours["p50_us"] / 1000,
        "p99_ms_c16": ours["p99_us"] / 1000, "errors_c16": ours["errors"] + ours["non_2xx"],
        "rps_at_1000_rps": round(ours_rate["rps"], 1),
        "p50_ms_at_1000_rps": ours_rate["p50_us"] / 1000,
        "p99_ms_at_1000_rps": ours_rate["p99_us"] / 1000,
        "p999_ms_at_1000_rps": ours_rate["p999_us"] / 1000,
        "errors_at_1000_rps": ours_rate["errors"] + ours_rate["non_2xx"],
        "v1_rps_c16": round(ours_v1["rps"], 1), "v1_p99_ms_c16": ours_v1["p99_us"] / 1000,
        "ratio_to_bare_server": round(ratio, 3), "rss_bytes": rss_now, "rss_peak_bytes": rss_peak,
        "load_s": round(load_s, 2), "fallbacks": fallbacks, "quick": args.quick,
        "load_generator": "wrk 4.1 (-t2 -c16; paced run: per-connection delay)",
    })
    targets = {
        "ratio_to_bare_server >= 0.8": ratio >= 0.8,
        "p99_ms_at_1000_rps <= 10": ours_rate["p99_us"] / 1000 <= 10,
        "rss_bytes <= 2 x factor bytes": rss_now <= 2 * factor_bytes,
    }
    path = write_result("serve" if not args.quick else "serve-quick", figures, targets)
    print(f"targets: {targets}\nwrote {path}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
