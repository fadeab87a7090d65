"""``python -m ingestor [COMMAND] [flags] [key=value overrides]``, COMMAND one of:

* ``run`` (default): consume the topic until SIGTERM (exit 0).
* ``snapshot [--start YYYY-MM-DD] [--end YYYY-MM-DD]``: finish lake maintenance (compaction,
  watch sessions), freeze an immutable snapshot, print its manifest as JSON.
* ``compact``: compact small files and rebuild stale watch sessions, then exit.
* ``retention``: apply the retention settings (``ingestor.*_retention_days``, ``snapshots_keep``,
  ``registry_keep``; ``ingestor/retention.py``) once; prints what was deleted as JSON.
* ``erase USER_ID [USER_ID ...]``: erase users from the online store, the lake, the snapshots
  holding them, and mark the models trained on them (``ingestor/erase.py``); prints a JSON
  report.
* ``erasure-api``: serve the erasure API for the account system on ``ingestor.admin_port``
  (``POST /admin/erasures``, ``GET /admin/erasures/<id>``; ``ingestor/erasure_api.py``).
* ``rekey [--users FILE] [--drop-unmapped] [--keep-snapshots]``: move the lake, the online
  store and the erasure ledger to the current pseudonym key, from raw ids or from an older key
  (then ``--users``: the account system's ids, one per line, ``-`` for stdin;
  ``ingestor/rekey.py``); prints a JSON report.

With pseudonymous ids configured (``MOVIEREC_PSEUDONYM_KEYS`` or ``data.pseudonym_keys_file``,
``movierec_core/pseudonym.py``) every command writes pseudonyms; an unusable key or a lake under
another key stops it with exit 2 and the reason.
"""

from __future__ import annotations

import signal
import threading

# A SIGTERM that arrives while the process is still importing or connecting (a supervisor
# stopping it right after a restart) must end it cleanly too: nothing consumed, nothing to
# commit, exit 0. Installed before the heavy imports below.
_EARLY_STOP = threading.Event()
if __name__ == "__main__":  # not when imported (tests, other entry points)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: _EARLY_STOP.set())

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from ingestor.config import register_configs  # noqa: E402
from movierec_core.config import compose, split_overrides, write_resolved  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="python -m ingestor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="run",
                        choices=["run", "snapshot", "compact", "erase", "retention", "rekey",
                                 "erasure-api"])
    parser.add_argument("user_ids", nargs="*", metavar="USER_ID", help="erase: the users")
    parser.add_argument("--start", help="snapshot: first event date (inclusive)")
    parser.add_argument("--end", help="snapshot: last event date (inclusive)")
    parser.add_argument("--summary", action="store_true",
                        help="snapshot: print its id, file and row counts, not the manifest "
                             "(a pipeline step's output stays small as the lake grows; the "
                             "manifest is in the lake, _snapshots/<id>.json)")
    parser.add_argument("--users", metavar="FILE",
                        help="rekey from an older key: the account system's user ids, one per "
                             "line (- for standard input)")
    parser.add_argument("--drop-unmapped", action="store_true",
                        help="rekey: delete the rows of users no --users id maps")
    parser.add_argument("--keep-snapshots", action="store_true",
                        help="rekey: keep the snapshots under the old key (default: expire them)")
    opts = parser.parse_args(args)

    if opts.command != "run":  # one-shot commands stop on SIGTERM the ordinary way
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if _EARLY_STOP.is_set():
            return 128 + signal.SIGTERM
    register_configs()
    cfg = compose("ingestor", overrides)
    logging.basicConfig(level=str(cfg.ingestor.log_level).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python logs every refused reconnect at ERROR; the ingestor logs outages once itself
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    # httpx logs each request's URL at INFO, and the enricher's URLs name users by id: the logs
    # hold no user ids (docs/security.md; found in the ingestor's logs on the cluster)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    from movierec_core.pseudonym import PseudonymKeyError

    try:
        return _command(opts, parser, cfg, overrides)
    except PseudonymKeyError as exc:
        print(f"{opts.command}: {exc}", file=sys.stderr)
        return 2


def _command(opts, parser, cfg, overrides) -> int:
    lake_root = cfg.data.lake_root
    if opts.command == "erase":
        return erase_command(cfg, opts.user_ids)
    if opts.command == "retention":
        return retention_command(cfg)
    if opts.command == "rekey":
        return rekey_command(cfg, opts)
    if opts.command == "erasure-api":
        from ingestor.erasure_api import serve

        return serve(cfg)
    if opts.command == "run":
        # a batch bound of 0 would never let a poll happen: the ingestor would run, consume
        # nothing and say nothing
        bounds = ("batch_max_records", "batch_max_bytes", "batch_max_wait_s")
        bad = [f"ingestor.{k}={cfg.ingestor[k]}" for k in bounds if not cfg.ingestor[k] > 0]
        if bad:
            parser.error(f"batch bounds must be positive: {', '.join(bad)}")
        if int(cfg.ingestor.workers) > 1:
            from ingestor.supervisor import supervise

            return supervise(int(cfg.ingestor.workers), overrides,
                             int(cfg.ingestor.metrics_port))
        from ingestor import metrics
        from ingestor.app import Ingestor, install_signal_handlers

        write_resolved(cfg, f"{lake_root}/_ingestor")
        metrics.serve(int(cfg.ingestor.metrics_port))
        ingestor = Ingestor(cfg)
        install_signal_handlers(ingestor)
        if _EARLY_STOP.is_set():
            logging.getLogger("ingestor").info("stopped before consuming anything; exiting")
            return 0
        return ingestor.run()

    if opts.user_ids:
        parser.error(f"unexpected arguments {opts.user_ids} for {opts.command}")
    from ingestor.lake import maintain, recover

    recover(lake_root)
    result = maintain(lake_root, float(cfg.ingestor.session_gap_s),
                      int(cfg.ingestor.compact_min_files))
    if opts.command == "compact":
        print(json.dumps(result))
        return 0
    from movierec_core.snapshot import create_snapshot

    manifest = create_snapshot(lake_root, opts.start, opts.end)
    if opts.summary:
        print(json.dumps(snapshot_summary(manifest)))
    else:
        print(json.dumps(manifest, indent=2))
    return 0


@contextlib.contextmanager
def _recovered_lake_and_store(cfg):
    """For one-shot commands that change the lake: interrupted replacements finished first,
    and the online store (when the ingestor keeps one) open for the duration."""
    from ingestor.lake import recover
    from movierec_core.online_store import open_store

    recover(cfg.data.lake_root)
    store = open_store(cfg.data) if cfg.ingestor.online_store else None
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def retention_command(cfg) -> int:
    from ingestor.retention import RetentionPolicy, apply_retention

    with _recovered_lake_and_store(cfg) as store:
        report = apply_retention(RetentionPolicy.from_config(cfg.ingestor), cfg.data.lake_root,
                                 store, cfg.data.registry_root)
    print(json.dumps(report.to_json()))
    return 0


def erase_command(cfg, user_ids: list[str]) -> int:
    bad = [u for u in user_ids if not (u.isascii() and u.isdigit())]
    if not user_ids or bad:
        print(f"erase: user ids must be non-negative integers (got {bad or 'none'})",
              file=sys.stderr)
        return 2
    from ingestor.erase import erase_users
    from movierec_core.pseudonym import KeyRing, check_lake_key
    from movierec_core.registry import FileRegistry

    ring = KeyRing.from_config(cfg.data)
    with _recovered_lake_and_store(cfg) as store:
        check_lake_key(cfg.data.lake_root, ring)
        report = erase_users(cfg.data.lake_root, [int(u) for u in user_ids], store,
                             FileRegistry(cfg.data.registry_root), caller="cli",
                             pseudonyms=ring.current)
    print(json.dumps(report.to_json()))
    return 0


def rekey_command(cfg, opts) -> int:
    from ingestor.rekey import rekey
    from movierec_core.pseudonym import KeyRing

    users = None
    if opts.users:
        try:
            text = sys.stdin.read() if opts.users == "-" else Path(opts.users).read_text()
        except OSError as exc:
            print(f"rekey: cannot read --users {opts.users}: {exc.strerror}", file=sys.stderr)
            return 2
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        bad = [line for line in lines if not (line.isascii() and line.isdigit())]
        if bad:
            print(f"rekey: --users must hold one non-negative integer id per line "
                  f"(got {bad[0][:40]!r})", file=sys.stderr)
            return 2
        users = [int(line) for line in lines]
    with _recovered_lake_and_store(cfg) as store:
        report = rekey(cfg.data.lake_root, KeyRing.from_config(cfg.data), users, store=store,
                       drop_unmapped=opts.drop_unmapped, keep_snapshots=opts.keep_snapshots)
    print(json.dumps(report.to_json()))
    return 0


def snapshot_summary(manifest: dict) -> dict:
    """What a pipeline passes on: the id (the manifest stays in the lake), and counts."""
    files = manifest.get("files", [])
    return {"snapshot_id": manifest["snapshot_id"], "files": len(files),
            "rows": sum(int(f.get("rows", 0)) for f in files),
            "content_hash": manifest.get("content_hash")}


if __name__ == "__main__":
    sys.exit(main())
