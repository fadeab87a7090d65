"""Model server throughput and latency against a bare KServe ModelServer, same machine, same run.

    .venv/bin/python bench/serve.py [--quick] [--loop uvloop|asyncio]

Full size: a 1,000,000-user x 20,000-movie x 64-factor ALS bundle (synthetic factors, 8 seen
movies per user, memory-mapped), served by ``python -m model_server`` with the online store on.
Load from ``wrk`` (Debian package; ``make -f mk/model_server.mk wrk`` installs it) with random user
ids (~95 % known, ~5 % cold starts). The baseline is a bare ``kserve.ModelServer`` in the same
run, on the same event loop (uvloop by default, what KServe's ``event_loop=auto`` documents;
the stdlib loop with ``--loop asyncio``), compared route for route:

* ``GET /recommend/<uid>``: ours ranks. Two baselines: the bare V1 predict (KServe's
  cheapest inference route, issue 7's baseline) and a bare ``/recommend`` route, added to
  KServe's app the same way, that answers a fixed list (what routing and ranking cost over
  a raw Starlette route; informative, no target);
* V1 ``POST /v1/models/<name>:predict`` with the same body: ours ranks, the bare model's
  ``predict`` returns nothing;
* ``/recommend`` paced at ~1,000 req/s for the latency under load: each request is due at its
  slot of a fixed schedule (not after a think time, which made the rate offered fall with the
  server's latency: at 15 ms of think time a server answering in 1.6 ms on average was offered
  5 % less than one answering in 0.7 ms however idle it was);
* the same paced load on a second model server with two stages: the bundle's ANN index
  (``serving.retrieval=ann``) retrieves the 50 best candidates and a LambdaMART ranker of
  ``RANKER_TREES`` trees, compiled to machine code (``model_server.compile_ranker``), orders
  them over :mod:`movierec_core.features` (issue 22's budget: p99 <= 10 ms at 1,000 req/s);
* repeated requests (90 % from 20,000 active users, the rest random) for the recommendation
  cache: its hit rate (the server's own counters) and the throughput and latency with it.

Rounds interleave (bare, ours, bare, ours, ...); ratios are taken round by round and reported
as the median with the spread. Writes bench/results/serve.json (serve-asyncio.json).

Targets (issues 7 and 19): /recommend >= 0.8 x the bare server, V1 >= 0.7 x with a p99
within 2 x the bare server's, p99 <= 10 ms at ~1,000 req/s (with the rate kept: >= 0.95 x what
the bare server answers under the same pacing), RSS <= 2 x the factor bytes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
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

from bench.common import spread, write_result  # noqa: E402
from devstack.ports import free_port  # noqa: E402
from devstack.supervisor import Supervisor  # noqa: E402

CACHE = REPO / ".cache" / "bench-serve"
HOT_USERS, HOT_SHARE = 20_000, 0.9

BARE_SERVER = textwrap.dedent('''
    import logging, sys
    import kserve
    from kserve import model_server as kms
    from fastapi.responses import Response

    BODY = ",".join(f"movie+{i}+2000" for i in range(20))

    async def recommend(request):  # the same route as ours, doing no work
        int(request.path_params["user_id"])
        return Response(BODY, media_type="text/plain; charset=utf-8")

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
        kms.app.add_route("/recommend/{user_id}", recommend, methods=["GET"])
        if sys.argv[2] == "uvloop":  # the same loop as the model server under test
            import asyncio, uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            asyncio.set_event_loop(asyncio.new_event_loop())
        server.start([Bare()])
''')

WRK_SCRIPT = '''
local seed = {seed}
local max_id = {max_id}
local method = "{method}"
local path = "{path}"
local body = '{body}'
local interval_ms = {interval_ms}
local hot_n = {hot_n}
local hot_share = {hot_share}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  -- a seed of its own per run and thread: a run that replayed the users of the run before
  -- measured the recommendation cache's hits (rounds alternated between ~2,300 and ~3,900 req/s)
  math.randomseed(seed * 1000 + (tid or 0))
end
function request()
  if method == "GET" then
    if hot_n > 0 and math.random() < hot_share then
      -- repeated requests: the active users of the moment (what a cache is for)
      return wrk.format("GET", path .. math.random(0, hot_n - 1))
    end
    return wrk.format("GET", path .. math.random(0, max_id))
  end
  -- a random user per request (like /recommend): a fixed one would measure the cache
  local b = string.gsub(body, "USER", tostring(math.random(0, max_id)))
  return wrk.format("POST", path, {{["Content-Type"] = "application/json"}}, b)
end
if interval_ms > 0 then
  -- paced by a schedule, not a think time: this thread's k-th request is due at start +
  -- k x interval, and waits only for its slot (none when behind). The rate offered is the
  -- same whatever the server's latency; a server that cannot keep it answers fewer.
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct {{ long tv_sec; long tv_nsec; }} movierec_timespec;
    int clock_gettime(int clk_id, movierec_timespec *tp);
  ]]
  local ts = ffi.new("movierec_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local due = nil  -- the slot of this thread's next request
  function delay()
    local now = now_ms()
    if due == nil then due = now end
    local wait = due - now
    due = due + interval_ms
    if wait < 0 then return 0 end
    return wait
  end
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
    # bundles written before compact CSR index types (uint16/int32) are rebuilt, not reused
    path = directory / f"{tag}-compact"
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


def ensure_index(bundle: Path) -> dict:
    """The bundle's ANN index (built once, cached with the bundle), as the trainer builds it.
    The factors are random (no structure): its recall here says nothing (bench/retrieval.py
    measures recall on a trained model); what counts here is what a search costs."""
    from movierec_core.models.bundle import load_bundle
    from movierec_core.models.retrieval import (
        INDEX_FILE,
        AnnIndex,
        RetrievalConfig,
        build_for_bundle,
    )

    if not (bundle / INDEX_FILE).is_file():
        b = load_bundle(bundle, verify=False)
        build_for_bundle(np.asarray(b.model.item_factors), np.asarray(b.model.user_factors[:200]),
                         RetrievalConfig(kind="hnsw_ip", recall_users=200)).save(bundle)
    return AnnIndex.load(bundle).meta


RANKER_TREES = 200  # more than the closed loop's rankers keep (bench/results/two_stage.json)


def ensure_ranker(bundle: Path, seed: int = 5) -> Path:
    """The bundle with a learned second stage, as a sibling directory of links (the factors are
    not copied): a LambdaMART ranker of ``RANKER_TREES`` trees of 31 leaves over the
    features of :mod:`movierec_core.features`, fitted on synthetic rows (what counts here is
    what scoring 50 candidates costs, not what the trees learned), and an item table with 18
    genres."""
    import lightgbm as lgb

    from movierec_core.features import ItemTable, feature_names
    from movierec_core.models.bundle import load_bundle
    from movierec_core.models.ranker import Ranker

    target = bundle.parent / f"{bundle.name}-ranker"
    if (target / "ranker.txt").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for f in bundle.iterdir():
        if not (target / f.name).exists():
            (target / f.name).symlink_to(f.resolve())
    b = load_bundle(bundle, verify=False)
    n = b.n_items
    rng = np.random.default_rng(seed)
    genres = np.zeros((n, 18), np.float32)
    genres[np.arange(n), rng.integers(0, 18, n)] = 1.0
    items = ItemTable(genres, [f"g{j}" for j in range(18)], np.full(n, 2000, np.int32),
                      rng.integers(60, 180, n).astype(np.float32), np.asarray(b.costs, np.float32),
                      np.log1p(rng.pareto(1.5, n)).astype(np.float32),
                      rng.random(n, dtype=np.float32))
    rows, per = 20_000, 20
    x = rng.standard_normal((rows, len(feature_names()))).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 3] + rng.standard_normal(rows) > 1.5).astype(np.int32)
    booster = lgb.train({"objective": "lambdarank", "num_leaves": 31, "min_data_in_leaf": 20,
                         "verbosity": -1, "num_threads": 1, "seed": seed},
                        lgb.Dataset(x, y, group=np.full(rows // per, per)),
                        num_boost_round=RANKER_TREES)
    Ranker(booster, items, {"candidates": 50, "features": feature_names(),
                            "best_iteration": RANKER_TREES, "synthetic": True}).save(target)
    return target


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
    from model_server.engine import Engine
    from movierec_core.online_store import UserInteraction

    engine = Engine.load(bundle_dir)
    rng = np.random.default_rng(5)
    users = rng.integers(0, n_users, 2000)
    t0 = time.perf_counter()
    for u in users:
        engine.rank(int(u), [], 20)
    model_us = (time.perf_counter() - t0) / users.size * 1e6
    watched = datetime(2025, 3, 2, 12, 0)  # the online store's type, as the server reads it
    fresh = [UserInteraction(engine.item_ids[int(i)], 40, 39, None, watched)
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
            "rank_us_cost_aware": round(cost_us, 1),
            # the norm-pruned scorer's share of the catalogue scored per request (lambda 0)
            "fraction_of_items_scored": round(engine.scorer.fraction_scored, 4)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


_WRK_RUNS = itertools.count(1)


def wrk(url: str, path: str, *, seconds: float, connections: int, max_id: int = 0,
        method: str = "GET", body: str = "", rate: float = 0.0, hot_n: int = 0,
        hot_share: float = 0.0) -> dict:
    """A wrk run (2 threads); ``rate``: requests/s offered by a schedule (0: as fast as the
    connections go)."""
    interval_ms = 2 * 1000.0 / rate if rate > 0 else 0.0  # each of the 2 threads: rate / 2
    script = WRK_SCRIPT.format(seed=next(_WRK_RUNS), max_id=max_id, method=method, path=path,
                               body=body, interval_ms=interval_ms, hot_n=hot_n,
                               hot_share=hot_share)
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
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                    help="event loop of both servers (model_server.event_loop; the bare server "
                         "gets the same)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk (make -f mk/model_server.mk wrk)")
        return 2
    n_users, n_items, factors = (20_000, 2_000, 64) if args.quick else (1_000_000, 20_000, 64)
    seconds = 3 if args.quick else 8
    rounds_n = 2 if args.quick else 3
    rate = 1000
    CACHE.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(CACHE, n_users, n_items, factors, seen_per_user=8)
    factor_bytes = (n_users + n_items) * factors * 4
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    store = work / "online.sqlite"
    make_store(store, n_users, n_items, active_users=max(n_users // 50, 100))
    index_meta = ensure_index(bundle)
    ranked_bundle = ensure_ranker(bundle)
    micro = rank_microbench(bundle, n_users, n_items)
    print(f"ranking in-process: {micro}")
    max_id = int(n_users * 1.05)  # ~5 % of requests are users the model has never seen
    figures: dict = {"n_users": n_users, "n_items": n_items, "factors": factors,
                     "factor_bytes": factor_bytes, "duration_s_per_run": seconds,
                     "event_loop": args.loop, **micro}

    # Both servers up at once; measurements interleave (bare, ours, bare, ours, ...) so that a
    # change in the load of this shared machine hits both alike. Medians over the rounds.
    bare_py = work / "bare_server.py"
    bare_py.write_text(BARE_SERVER)
    bare_port, port = free_port(), free_port()
    supervisor = Supervisor(work / "logs")
    env = {"OPENBLAS_NUM_THREADS": "1"}
    try:
        bare_proc = supervisor.start("bare", ["python", str(bare_py), str(bare_port), args.loop],
                                     env=env)
        supervisor.wait_http("bare", f"http://127.0.0.1:{bare_port}/v2/models/bare/ready", 120)
        t0 = time.monotonic()
        proc = supervisor.start("model_server", [
            "python", "-m", "model_server", f"serving.http_port={port}",
            f"serving.model_dir={bundle}", f"data.online_store_path={store}",
            f"serving.provenance_log={work / 'provenance.jsonl'}", "metadata_api.url=",
            f"model_server.event_loop={args.loop}"],
            env=env)
        supervisor.wait_http("model_server", f"http://127.0.0.1:{port}/v2/models/movierec/ready",
                             300)
        load_s = time.monotonic() - t0
        ann_port = free_port()
        ann_proc = supervisor.start("model_server_ann", [
            "python", "-m", "model_server", f"serving.http_port={ann_port}",
            f"serving.model_dir={ranked_bundle}", f"data.online_store_path={store}",
            f"serving.provenance_log={work / 'provenance-ann.jsonl'}", "metadata_api.url=",
            f"model_server.event_loop={args.loop}", "serving.retrieval=ann",
            # measured once the trees are machine code (what the server runs on within seconds
            # of a load; compiled once, then loaded from the cache)
            "model_server.compile_ranker=blocking",
            f"model_server.compile_cache_dir={CACHE / 'compiled'}"], env=env)
        supervisor.wait_http("model_server_ann",
                             f"http://127.0.0.1:{ann_port}/v2/models/movierec/ready", 300)
        import httpx

        bare_url, url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{port}"
        ann_url = f"http://127.0.0.1:{ann_port}"
        sample = httpx.get(f"{url}/recommend/12345", timeout=5)
        assert sample.status_code == 200 and len(sample.text.split(",")) == 20, sample.text

        def measured(pid: int, run) -> dict:
            """A wrk run plus the server's CPU seconds per request during it."""
            cpu0 = cpu_seconds(pid)
            result = run()
            result["cpu_ms_per_request"] = (cpu_seconds(pid) - cpu0) * 1000 / max(
                result["requests"], 1)
            return result

        v1_body = '{"instances": [{"user_id": USER, "k": 20}]}'
        routes = {
            "recommend": (lambda u, **kw: wrk(u, "/recommend/", max_id=max_id, **kw),
                          lambda u, **kw: wrk(u, "/recommend/", max_id=max_id, **kw)),
            "v1": (lambda u, **kw: wrk(u, "/v1/models/bare:predict", method="POST",
                                       body=v1_body, max_id=max_id, **kw),
                   lambda u, **kw: wrk(u, "/v1/models/movierec:predict", method="POST",
                                       body=v1_body, max_id=max_id, **kw)),
            "hot": (lambda u, **kw: wrk(u, "/recommend/", max_id=max_id, hot_n=HOT_USERS,
                                        hot_share=HOT_SHARE, **kw),
                    lambda u, **kw: wrk(u, "/recommend/", max_id=max_id, hot_n=HOT_USERS,
                                        hot_share=HOT_SHARE, **kw)),
        }

        def run(side: str, route: str, **kw) -> dict:
            bare_fn, ours_fn = routes[route]
            if side == "bare":
                return measured(bare_proc.pid, lambda: bare_fn(bare_url, **kw))
            if side == "ann":
                return measured(ann_proc.pid, lambda: ours_fn(ann_url, **kw))
            return measured(proc.pid, lambda: ours_fn(url, **kw))

        def cache_counts() -> dict[str, float]:
            text = httpx.get(f"{url}/metrics", timeout=5).text
            return {line.split('result="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("movierec_model_server_cache_lookups_total{")}

        for route in ("recommend", "v1"):  # warm up the servers on their routes
            run("bare", route, seconds=2, connections=16)
            run("ours", route, seconds=2, connections=16)
        run("ann", "recommend", seconds=2, connections=16)
        # (name, route, sides, wrk options); within a round the sides run one after the other
        plan = [("recommend", "recommend", ("bare", "ours"), {}),
                ("v1", "v1", ("bare", "ours"), {}),
                ("recommend_paced", "recommend", ("bare", "ours", "ann"), {"rate": rate}),
                ("recommend_hot", "hot", ("bare", "ours"), {})]
        rounds: dict[str, list[dict]] = {f"{side}_{name}": [] for name, _, sides, _ in plan
                                         for side in sides}
        hot_lookups: list[dict[str, float]] = []
        for n in range(rounds_n):
            for name, route, sides, kw in plan:
                for side in sides:
                    key = f"{side}_{name}"
                    before = cache_counts() if key == "ours_recommend_hot" else None
                    rounds[key].append(run(side, route, seconds=seconds, connections=16, **kw))
                    if before is not None:
                        after = cache_counts()
                        hot_lookups.append({r: after.get(r, 0) - before.get(r, 0)
                                            for r in ("hit", "miss", "stale")})
                    print(f"round {n + 1} {key:24s}: {fmt(rounds[key][-1])}")
        rss_now, rss_peak = rss(proc.pid)
        rss_anon = int(next(line.split()[1] for line in Path(f"/proc/{proc.pid}/status")
                            .read_text().splitlines() if line.startswith("RssAnon"))) * 1024
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
    finally:
        supervisor.stop_all()
    fallbacks = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("movierec_model_server_fallbacks_total{"))

    def per_round(key: str, field: str, scale: float = 1.0) -> dict:
        return spread([r[field] * scale for r in rounds[key]])

    def ratio(ours: str, bare: str, field: str = "rps", side: str = "ours") -> dict:
        return spread([o[field] / b[field] for o, b in zip(
            rounds[f"{side}_{ours}"], rounds[f"bare_{bare}"], strict=True)])

    # /recommend against KServe's cheapest inference route (the bare V1 predict that does
    # nothing), as issue 7 defined it; the same against a bare /recommend route that does no
    # work at all (what routing plus ranking cost over a raw Starlette route); V1 against V1
    recommend_ratio, v1_ratio = ratio("recommend", "v1"), ratio("v1", "v1")
    route_ratio = ratio("recommend", "recommend")
    # capacity of a one-process (GIL) server ~ 1 / CPU per request: far less sensitive to what
    # the rest of a shared machine does than wall-clock throughput
    cpu_ratio = spread([b["cpu_ms_per_request"] / o["cpu_ms_per_request"] for o, b in zip(
        rounds["ours_recommend"], rounds["bare_recommend"], strict=True)])
    v1_p99_ratio = ratio("v1", "v1", "p99_us")
    p99_paced = per_round("ours_recommend_paced", "p99_us", 1e-3)
    p99_paced_ann = per_round("ann_recommend_paced", "p99_us", 1e-3)
    # a p99 "at ~1,000 req/s" holds only if the server kept up: 16 connections carry the
    # schedule, so a server that cannot sustain the rate falls behind it and answers fewer. The
    # bare server's rate in the same round is what the schedule delivers on this machine.
    kept_up = ratio("recommend_paced", "recommend_paced")
    kept_up_ann = ratio("recommend_paced", "recommend_paced", side="ann")
    hit_rate = spread([h["hit"] / max(sum(h.values()), 1) for h in hot_lookups])
    errors = sum(r["errors"] + r["non_2xx"] for rs in rounds.values() for r in rs)
    print(f"\n/recommend: {recommend_ratio['median']:.2f} x the bare server's V1 predict "
          f"({recommend_ratio['min']:.2f} … {recommend_ratio['max']:.2f}); "
          f"{route_ratio['median']:.2f} x a bare /recommend route that does no work (server CPU "
          f"per request ratio {cpu_ratio['median']:.2f})\nV1 :predict: {v1_ratio['median']:.2f} x the bare "
          f"server's ({v1_ratio['min']:.2f} … {v1_ratio['max']:.2f}), p99 "
          f"{v1_p99_ratio['median']:.2f} x\n~{rate} req/s: p99 {p99_paced['median']:.2f} ms "
          f"(bare {per_round('bare_recommend_paced', 'p99_us', 1e-3)['median']:.2f} ms)\n"
          f"server RSS {rss_now / 2**20:.0f} MiB (anonymous {rss_anon / 2**20:.0f} MiB, peak "
          f"{rss_peak / 2**20:.0f} MiB; factors {factor_bytes / 2**20:.0f} MiB)   load "
          f"{load_s:.1f} s   errors {errors}   fallbacks {fallbacks:.0f}\n"
          f"paced rate kept: {kept_up['median']:.2f} x the bare server's (two stages "
          f"{kept_up_ann['median']:.2f} x)\n"
          f"two stages: p99 {p99_paced_ann['median']:.2f} ms at ~{rate} req/s; repeated "
          f"requests: cache hit rate {hit_rate['median']:.2f}")
    for key in rounds:
        figures[f"{key}_rps"] = per_round(key, "rps")
        figures[f"{key}_p50_ms"] = per_round(key, "p50_us", 1e-3)
        figures[f"{key}_p99_ms"] = per_round(key, "p99_us", 1e-3)
        figures[f"{key}_cpu_ms_per_request"] = per_round(key, "cpu_ms_per_request")
    figures.update({
        "rounds": rounds_n, "errors": errors, "fallbacks": fallbacks,
        "ratio_recommend_to_bare_v1": recommend_ratio, "ratio_v1": v1_ratio,
        "ratio_recommend_to_bare_recommend_route": route_ratio,
        "ratio_v1_p99": v1_p99_ratio, "cpu_ratio_recommend": cpu_ratio,
        "p99_ms_at_1000_rps": p99_paced,
        "p99_ms_at_1000_rps_two_stage": p99_paced_ann,
        "paced_rate_to_bare": kept_up, "paced_rate_to_bare_two_stage": kept_up_ann,
        "cache_hit_rate_repeated_requests": hit_rate, "cache_lookups_repeated": hot_lookups,
        "repeated_requests": f"{HOT_SHARE:.0%} from {HOT_USERS:,} active users, the rest "
                             "random",
        "ratio_recommend_hot_to_bare_v1": ratio("recommend_hot", "v1"),
        "ann_index": index_meta,
        "two_stage_ranker": {"trees": RANKER_TREES, "leaves": 31, "candidates": 50,
                             "scored_by": "lleaves (model_server.compile_ranker=blocking)"},
        "rss_bytes": rss_now, "rss_anon_bytes": rss_anon, "rss_peak_bytes": rss_peak,
        "load_s": round(load_s, 2),
        "load_generator": f"wrk 4.1 -t2 -c16, {seconds} s per run (paced: {rate} req/s "
                          "offered by a schedule, each request due at its slot)",
    })
    targets = {
        "median /recommend ratio (to the bare V1) >= 0.8": recommend_ratio["median"] >= 0.8,
        "median V1 ratio >= 0.7": v1_ratio["median"] >= 0.7,
        "median V1 p99 <= 2 x the bare server's": v1_p99_ratio["median"] <= 2.0,
        "median p99 at ~1,000 req/s <= 10 ms": p99_paced["median"] <= 10,
        "median p99 at ~1,000 req/s with two stages <= 10 ms": p99_paced_ann["median"] <= 10,
        "paced: median rate >= 0.95 x the bare server's": kept_up["median"] >= 0.95,
        "paced with two stages: median rate >= 0.95 x the bare server's":
            kept_up_ann["median"] >= 0.95,
        "rss_bytes <= 2 x factor bytes": rss_now <= 2 * factor_bytes,
        "no errors": errors == 0,
    }
    name = "serve" + ("-asyncio" if args.loop == "asyncio" else "")
    path = write_result(name, figures, targets, quick=args.quick)
    print(f"targets: {targets}\nwrote {path}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
