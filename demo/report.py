"""The demo's report: what ran, reconciled against the simulator's ledger, and how well it served.

Everything is measured from the platform's own outputs — the lake the ingestor landed, the DLQ
topic, the registry, Prometheus — and compared with what the simulator says it produced.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
from statsmodels.stats.proportion import proportion_confint

from movierec_core import lake
from movierec_core.watch_through import DEFAULT_MIN_MINUTES, request_outcomes

if TYPE_CHECKING:
    from demo.platform import Platform

KIND_TABLE = {"watch": lake.WATCH_MINUTES, "rate": lake.RATINGS, "account": lake.ACCOUNT_CREATIONS,
              "recommend": lake.RECOMMENDATION_REQUESTS}
WINDOW_MINUTES = 60
EXPERIMENT = "demo-ab"
AB_WEIGHTS = {"champion": 50.0, "challenger": 50.0}


def read_table(root: Path, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    directory = lake.table_dir(root, table)
    if not directory.exists():
        return pd.DataFrame(columns=columns or [])
    return ds.dataset(directory, format="parquet", partitioning="hive").to_table(columns=columns).to_pandas()


def count_rows(root: Path, table: str) -> int:
    directory = lake.table_dir(root, table)
    if not directory.exists():
        return 0
    return ds.dataset(directory, format="parquet", partitioning="hive").count_rows()


def dead_letters(bootstrap: str, topic: str, timeout_s: float = 60.0) -> tuple[int, int]:
    """(records in the DLQ topic, distinct source lines they dead-letter).

    The DLQ is at-least-once: a broker outage while a dead letter is acknowledged can leave a
    second copy. Each record names its source (topic, partition, offset) in its headers, so the
    distinct count is what reconciles with the invalid lines produced."""
    from kafka import KafkaConsumer, TopicPartition

    from ingestor.dlq import origin_of

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return 0, 0
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records, sources = 0, set()
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for rec in batch:
                    records += 1
                    sources.add(origin_of(rec.headers) or (rec.partition, rec.offset))
        return records, len(sources)
    finally:
        consumer.close()


def reconcile(p: Platform) -> dict[str, Any]:
    ledger = p.sim.ledger
    rows = {kind: count_rows(p.lake_root, table) for kind, table in KIND_TABLE.items()}
    dlq_records, dlq = dead_letters(p.broker.bootstrap, "movielog.dlq")
    expected_dlq = ledger.invalid_total
    lost = {k: int(ledger.valid.get(k, 0)) - rows[k] for k in KIND_TABLE}
    return {
        "produced_lines": ledger.lines_total,
        "valid_by_kind": dict(ledger.valid), "lake_rows_by_kind": rows,
        "lost_by_kind": lost, "events_ingested": sum(rows.values()),
        "duplicates_delivered": ledger.duplicates, "invalid_produced": expected_dlq,
        "dlq_records": dlq_records, "dlq_distinct_lines": dlq,
        "reconciled": all(v == 0 for v in lost.values()) and dlq == expected_dlq,
    }


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval (statsmodels); NaN without trials."""
    if n == 0:
        return (float("nan"), float("nan"))
    lo, hi = proportion_confint(successes, n, alpha=0.05, method="wilson")
    return (float(lo), float(hi))


def online_metrics(p: Platform) -> dict[str, Any]:
    """Watch-through per arm / variant over the closed loop, from the lake alone."""
    from experiments.assignment import Allocation
    from experiments.stats import user_level_diff

    req = read_table(p.lake_root, lake.RECOMMENDATION_REQUESTS,
                     ["time", "user_id", "server", "status", "movie_ids", "response_ms"])
    watches = read_table(p.lake_root, lake.WATCH_MINUTES, ["time", "user_id", "movie_id", "minute"])
    live_start = pd.Timestamp(p.live_start) if p.live_start else req["time"].min()
    end = pd.Timestamp(p.sim.ledger.last_time) if p.sim.ledger.last_time else req["time"].max()
    req = req[req["time"] >= live_start].reset_index(drop=True)
    router = p.router_address
    alloc = Allocation.from_weights(AB_WEIGHTS)

    def arm_of(row_server: str, user: int) -> str:
        if row_server == router:
            return alloc.variant_of(EXPERIMENT, int(user))
        return row_server

    req["arm"] = [arm_of(s, u) for s, u in zip(req["server"], req["user_id"], strict=True)]
    via_router = req[req["server"] == router]
    latency = via_router["response_ms"].to_numpy(float)
    served = {
        "requests": int(len(via_router)),
        "success_rate": float((via_router["status"] == 200).mean()) if len(via_router) else float("nan"),
        "p50_ms": float(np.percentile(latency, 50)) if len(latency) else float("nan"),
        "p99_ms": float(np.percentile(latency, 99)) if len(latency) else float("nan"),
        "over_600ms": int((latency >= 600).sum()),
    }
    # only requests whose watch window closed before the run ended
    matured = req[req["time"] <= end - timedelta(minutes=WINDOW_MINUTES)]
    outcomes = request_outcomes(matured, watches, DEFAULT_MIN_MINUTES, WINDOW_MINUTES)
    arms: dict[str, dict[str, Any]] = {}
    for arm, group in outcomes.groupby("arm"):
        n, k = int(len(group)), int(group["watched_through"].sum())
        lo, hi = wilson(k, n)
        arms[str(arm)] = {"requests": n, "watched_through": k, "watch_through": k / n if n else float("nan"),
                          "ci95": [lo, hi], "minutes_per_request": float(group["best_minutes"].mean())}
    oracle = arms.get("oracle", {}).get("watch_through", float("nan"))
    for figures in arms.values():
        figures["ratio_to_oracle"] = figures["watch_through"] / oracle if oracle else float("nan")
    ab = None
    if "champion" in arms and "challenger" in arms:
        # users are the unit (the router assigns users; a user's requests go together): the
        # delta method's interval, fixed horizon (one look, at the end of the run)
        def per_user(arm: str) -> tuple[np.ndarray, np.ndarray]:
            g = outcomes[outcomes["arm"] == arm].groupby("user_id")["watched_through"]
            return g.sum().to_numpy(), g.count().to_numpy()

        test = user_level_diff(per_user("challenger"), per_user("champion"), sequential=False)
        ab = {"champion_minus_challenger": test.diff, "ci95": [test.ci_low, test.ci_high],
              "p_value": test.p_value, "significant": test.significant, "unit": "users",
              "users": {"champion": test.treatment_users, "challenger": test.control_users}}
    popularity = arms.get("popularity", {}).get("watch_through", float("nan"))
    champion = arms.get("champion", {}).get("watch_through", float("nan"))
    return {"window_minutes": WINDOW_MINUTES, "min_minutes": DEFAULT_MIN_MINUTES,
            "live_start": str(live_start), "end": str(end), "served": served, "arms": arms,
            "ab_test": ab,
            "champion_ratio_to_oracle": champion / oracle if oracle else float("nan"),
            "champion_over_popularity": champion / popularity if popularity else float("nan")}


def seed_role(seed: int) -> str:
    """Whether the world is one the champion's settings were tuned on (in-sample quality)."""
    from demo.platform import HELD_OUT_SEEDS, TUNING_SEEDS

    if seed in TUNING_SEEDS:
        return ("the seed model=als_demo was tuned on: in-sample quality; "
                "bench/closed_loop_quality.py reports held-out worlds")
    if seed in HELD_OUT_SEEDS:
        return "a held-out seed: the champion's settings were not tuned on it"
    return "not a tuning seed"


def build_report(p: Platform) -> dict[str, Any]:
    report: dict[str, Any] = {
        "settings": {"users": p.s.users, "seed": p.s.seed, "history_minutes": p.s.history_minutes,
                     "live_minutes": p.s.live_minutes, "router_share": p.s.router_share,
                     "seed_role": seed_role(p.s.seed)},
        "ports": p.ports, "run_dir": str(p.run_dir),
        **p.figures,
        "events": reconcile(p),
        "models": p.registry_summary(),
        "online": online_metrics(p),
        "timings_s": {k: round(v, 1) for k, v in p.timings.items()},
    }
    if p.prom is not None:
        from devstack import prometheus

        try:
            report["prometheus"] = prometheus.summary(p.prom.url)
        except Exception as exc:  # noqa: BLE001 - the report still stands without it
            report["prometheus"] = {"error": str(exc)}
    online = report["online"]
    report["targets"] = {
        "no accepted event lost": report["events"]["reconciled"],
        "champion ratio to oracle >= 0.6": bool(online["champion_ratio_to_oracle"] >= 0.6),
        "champion watch-through >= 3 x popularity": bool(online["champion_over_popularity"] >= 3),
        "/recommend success rate >= 99.9 %": bool(online["served"]["success_rate"] >= 0.999),
    }
    if "cluster" in report:
        cluster = report["cluster"]
        report["targets"]["helm test passed"] = bool(cluster["helm_test"]["passed"])
        report["targets"]["analysis counts == model servers' own counts"] = \
            bool(cluster["attribution"]["equal"])
    (p.run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (p.run_dir / "report.md").write_text(to_markdown(report))
    return report


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.1%}"


def to_markdown(r: dict[str, Any]) -> str:
    e, o, m = r["events"], r["online"], r["models"]
    lines = [
        f"# movierec demo report ({datetime.now().isoformat(timespec='seconds')})", "",
        f"{r['settings']['users']:,} users; {r['settings']['history_minutes']} simulated minutes of "
        f"history, {r['settings']['live_minutes']} of closed loop; world seed {r['settings']['seed']} "
        f"({r['settings'].get('seed_role', 'n/a')}).", "",
        "## Events", "",
        "| kind | produced (valid) | in the lake | lost |", "|---|---:|---:|---:|",
    ]
    for kind in KIND_TABLE:
        lines.append(f"| {kind} | {e['valid_by_kind'].get(kind, 0):,} | {e['lake_rows_by_kind'][kind]:,} "
                     f"| {e['lost_by_kind'][kind]:,} |")
    lines += ["", f"Ingested {e['events_ingested']:,} events of {e['produced_lines']:,} lines; "
              f"{e['duplicates_delivered']:,} duplicate deliveries dropped; DLQ {e['dlq_records']:,} "
              f"records ({e['dlq_distinct_lines']:,} distinct source lines) "
              f"for {e['invalid_produced']:,} invalid lines. Reconciled: **{e['reconciled']}**.", "",
              "## Models", ""]
    for v in m["versions"]:
        lines.append(f"- {v['version']}: {v['model_type']} {'(' + ', '.join(v['aliases']) + ')' if v['aliases'] else ''}")
    s = o["served"]
    lines += ["", "## /recommend through the router", "",
              f"{s['requests']:,} requests, success {_pct(s['success_rate'])}, p50 {s['p50_ms']:.0f} ms, "
              f"p99 {s['p99_ms']:.0f} ms, {s['over_600ms']} at or over 600 ms.", "",
              f"## Watch-through (≥ {o['min_minutes']} min of a listed movie within {o['window_minutes']} min)", "",
              "| arm / variant | requests | watch-through | 95 % CI | ratio to oracle |", "|---|---:|---:|---|---:|"]
    for arm, a in sorted(o["arms"].items()):
        lines.append(f"| {arm} | {a['requests']:,} | {_pct(a['watch_through'])} | "
                     f"{_pct(a['ci95'][0])} – {_pct(a['ci95'][1])} | {a['ratio_to_oracle']:.2f} |")
    if o.get("ab_test"):
        ab = o["ab_test"]
        lines += ["", f"A/B champion − challenger: {ab['champion_minus_challenger']:+.1%} "
                  f"(95 % CI {ab['ci95'][0]:+.1%} … {ab['ci95'][1]:+.1%}, p = {ab['p_value']:.2g}; "
                  f"users as the unit: {ab.get('users', {}).get('champion', 0):,} / "
                  f"{ab.get('users', {}).get('challenger', 0):,} users, delta method)"]
    if "cluster" in r:
        a = r["cluster"]["attribution"]
        lines += ["", "## Who served each request (on the cluster)", "",
                  "| variant | model version | analysis (router requests) | model servers' provenance |",
                  "|---|---|---:|---:|"]
        for variant in sorted(a["analysis_requests"]):
            lines.append(f"| {variant} | {a['versions'].get(variant)} | "
                         f"{a['analysis_requests'][variant]:,} | "
                         f"{a['model_server_requests'].get(variant, 0):,} |")
        lines += ["", f"Equal: **{a['equal']}**; {a['non_200_at_the_caller']} requests failed or "
                  f"timed out at the caller. `helm test`: "
                  f"**{'passed' if r['cluster']['helm_test']['passed'] else 'FAILED'}**.",
                  "", f"Container restarts during the run: {r['cluster']['restarts'] or 'none'}."]
    lines += ["", "## Targets", ""]
    lines += [f"- {'✓' if ok else '✗'} {name}" for name, ok in r["targets"].items()]
    if "prometheus" in r:
        lines += ["", "## Prometheus", "", "```", json.dumps(r["prometheus"], indent=1, default=str), "```"]
    lines += ["", f"Timings (s): {r['timings_s']}", ""]
    return "\n".join(lines)
