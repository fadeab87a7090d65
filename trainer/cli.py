"""Command line: ``python -m trainer [subcommand] [--flags] [key=value overrides]``.

    python -m trainer [snapshot=<id>|latest] [trainer.promote=true] ...   the main run
    python -m trainer [trainer.register=false] ...   train and write the bundle only (a JSON line)
    python -m trainer list | show <version|alias> | register <bundle> | promote [<version>] | rollback
    python -m trainer batch-recommend --interactions FILE --k 10 --output FILE
    python -m trainer movielens-eval --interactions FILE     (the offline protocol's figures)

Exit codes: 0 ok, 2 unusable input or registry error (one readable line on stderr), 1 anything
else.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from movierec_core.config import compose, split_overrides
from movierec_core.pushed_metrics import push_champion_moved
from movierec_core.registry import CHALLENGER, CHAMPION, FileRegistry, RegistryError
from movierec_core.snapshot import SnapshotError
from trainer.config import register_trainer_config
from trainer.data import TrainerInputError
from trainer.metrics import TrainerMetrics
from trainer.movielens import InputError

log = logging.getLogger("trainer")
SHORTCUTS = ("snapshot", "promote", "candidates", "split_time")  # snapshot=X → trainer.snapshot=X


def load_config(overrides: list[str]):
    register_trainer_config()
    fixed = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        fixed.append(f"trainer.{o}" if key in SHORTCUTS else o)
    return compose("trainer", fixed)


def _fail(msg: str, code: int = 2) -> int:
    print(f"trainer: error: {msg}", file=sys.stderr)
    return code


def cmd_run(cfg) -> int:
    from trainer.pipeline import run

    metrics = TrainerMetrics()
    t0 = time.perf_counter()
    outcome, code = "success", 0
    try:
        result = run(cfg)
        if CHAMPION in result.aliases:
            push_champion_moved(str(cfg.trainer.pushgateway), cfg.trainer.model_name,
                                result.version)
        warm = result.metrics.get("warm", {})
        if not cfg.trainer.register:
            # the pipeline's train step: one small JSON line (its outputs.result)
            print(json.dumps({"bundle_dir": str(result.bundle_dir),
                              "model_type": result.model_type,
                              "ndcg_at_10": warm.get("ndcg@10"),
                              "precision_at_10": warm.get("precision@10")}))
            metrics.runs.labels(outcome=outcome).inc()
            metrics.duration.set(time.perf_counter() - t0)
            metrics.push(str(cfg.trainer.pushgateway))
            return 0
        print(f"trainer: registered {cfg.trainer.model_name} {result.version} "
              f"({result.model_type}) aliases={','.join(result.aliases)} "
              f"ndcg@10={warm.get('ndcg@10', 'n/a')} p@10={warm.get('precision@10', 'n/a')} "
              f"in {result.duration_s:.1f}s → {result.bundle_dir}")
    except (TrainerInputError, SnapshotError, RegistryError) as exc:
        outcome, code = "input_error", _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - one readable line, details in the log
        log.exception("trainer run failed")
        outcome, code = "failure", _fail(f"{type(exc).__name__}: {exc}", 1)
    metrics.runs.labels(outcome=outcome).inc()
    metrics.duration.set(time.perf_counter() - t0)
    metrics.push(str(cfg.trainer.pushgateway))
    return code


def cmd_registry(cfg, args: list[str]) -> int:
    reg = FileRegistry(cfg.data.registry_root)
    name = str(cfg.trainer.model_name)
    cmd, rest = args[0], args[1:]
    if cmd == "list":
        rows = [v.summary() for v in reg.versions(name)]
        if not rows:
            print(f"{name}: no versions in {reg.root}")
        for r in rows:
            ndcg = r["metrics"].get("ndcg@10")
            print(f"{r['version']}  {r['model_type']:<10} {','.join(r['aliases']) or '-':<22} "
                  f"snapshot={r['snapshot']} ndcg@10={ndcg} created={r['created_at']}")
        return 0
    if cmd == "show":
        info = reg.show(name, rest[0] if rest else CHAMPION)
        print(json.dumps({**info.summary(), "manifest": info.manifest}, indent=2, default=str))
        return 0
    if cmd == "register":
        if not rest:
            return _fail("register needs a bundle directory: python -m trainer register <dir>")
        aliases = [CHALLENGER]
        if bool(cfg.trainer.promote) or reg.get_alias(name, CHAMPION) is None:
            aliases.append(CHAMPION)
        version = reg.register(name, rest[0], aliases=tuple(aliases))
        if CHAMPION in aliases:
            push_champion_moved(str(cfg.trainer.pushgateway), name, version)
        print(json.dumps({"version": version, "aliases": aliases}))
        return 0
    if cmd == "promote":
        version = reg.promote(name, rest[0] if rest else None)
        push_champion_moved(str(cfg.trainer.pushgateway), name, version)
        print(f"{name}: champion → {version}")
        return 0
    if cmd == "rollback":
        alias = rest[0] if rest else CHAMPION
        print(f"{name}: {alias} → {reg.rollback(name, alias)}")
        return 0
    return _fail(f"unknown registry command {cmd!r}")


def cmd_batch_recommend(cfg, argv: list[str]) -> int:
    from trainer.movielens import fit_production, read_ratings, recommend_all

    p = argparse.ArgumentParser(prog="python -m trainer batch-recommend")
    p.add_argument("--interactions", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    if a.k <= 0:
        return _fail(f"--k must be positive, got {a.k}")
    bc = cfg.trainer.batch
    t0 = time.perf_counter()
    df = read_ratings(a.interactions, bc.rating_min, bc.rating_max)
    model_cfg = dict(bc.model)
    model, enc = fit_production(df, model_cfg, int(cfg.trainer.num_threads))
    recs = recommend_all(model, enc, a.k)
    recs.to_csv(a.output, index=False, float_format="%.6g")
    print(f"trainer: {len(recs)} recommendations for {enc.user_ids.size} users "
          f"({model.model_type}, {enc.item_ids.size} items) in {time.perf_counter() - t0:.1f}s "
          f"→ {a.output}")
    return 0


def cmd_movielens_eval(cfg, argv: list[str]) -> int:
    from trainer.movielens import read_ratings, run_protocol

    p = argparse.ArgumentParser(prog="python -m trainer movielens-eval")
    p.add_argument("--interactions", required=True)
    p.add_argument("--k", type=int, default=10)
    a = p.parse_args(argv)
    bc = cfg.trainer.batch
    df = read_ratings(a.interactions, bc.rating_min, bc.rating_max)
    res = run_protocol(df, dict(bc.model), a.k, int(cfg.trainer.seed), int(cfg.trainer.num_threads))
    print(json.dumps(res, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    if args and args[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    try:
        cfg = load_config(overrides)
    except Exception as exc:  # noqa: BLE001 - bad override: say so in one line
        return _fail(f"bad configuration: {exc}")
    if not args:
        return cmd_run(cfg)
    try:
        if args[0] in ("list", "show", "register", "promote", "rollback"):
            return cmd_registry(cfg, args)
        if args[0] == "batch-recommend":
            return cmd_batch_recommend(cfg, args[1:])
        if args[0] == "movielens-eval":
            return cmd_movielens_eval(cfg, args[1:])
    except (RegistryError, InputError, TrainerInputError) as exc:
        return _fail(str(exc))
    return _fail(f"unknown command {args[0]!r}; see python -m trainer --help")
