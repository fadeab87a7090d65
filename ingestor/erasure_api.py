"""The erasure API for the platform's account system: ``python -m ingestor erasure-api``.

``POST /admin/erasures`` with ``{"user_ids": [42, 7]}`` (at most ``max_users`` ids, a body of at
most ``max_body_bytes``) and ``Authorization: Bearer <admin token>`` answers **202** with the
job (``{"id", "status": "queued", "users": n}``, ``Location: /admin/erasures/<id>``) once the
request is durable: the job file is written and fsynced under ``<lake>/_erased/jobs/`` before
the answer, and a job the process did not finish (a crash, a restart) is run again at the next
start, so an accepted erasure is never lost. One worker thread runs the jobs in order with
:func:`ingestor.erase.erase_users` (each step idempotent, like the command
``python -m ingestor erase``). ``GET /admin/erasures/<id>`` answers the job: ``queued``,
``running``, ``done`` with the erasure report, or ``failed`` with the error (retried at the
next start, at most 3 attempts in all: a job the process dies in is not retried for ever).
``GET /healthz`` answers 200.

Ids are user ids as the account system knows them; with pseudonymous ids configured the job
file and the report hold only their pseudonyms (:mod:`movierec_core.pseudonym`). Every call is
admitted by :class:`~movierec_core.security.AdminAuth` (the admin token from a Secret; without
one, loopback callers only) and audited (logger ``movierec.audit``) with the caller.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from movierec_core.security import AdminAuth, audit
from movierec_core.shutdown import StopOnSigterm

log = logging.getLogger("ingestor.erasure_api")

JOBS_DIR = Path("_erased") / "jobs"
MAX_ATTEMPTS = 3  # a job the process dies in (out of memory, say) is not retried for ever
MAX_USERS = 1000
MAX_BODY_BYTES = 64 * 1024


class ErasureJobs:
    """Durable jobs (one JSON file each) and the worker that runs them."""

    def __init__(self, lake_root: Path | str, erase) -> None:
        """``erase(user_ids, caller) -> dict`` does the erasure and returns its report."""
        self.dir = Path(lake_root) / JOBS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self._erase = erase
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="erasure-jobs", daemon=True)

    def start(self) -> ErasureJobs:
        unfinished = sorted((j for j in map(self.get, self._ids())
                             if j and j["status"] in ("queued", "running")
                             or j and j["status"] == "failed"
                             and j.get("attempts", 0) < MAX_ATTEMPTS),
                            key=lambda j: j["submitted_at"])
        for job in unfinished:
            log.info("erasure job %s was not finished (%s): running it again", job["id"],
                     job["status"])
            self._save({**job, "status": "queued"})
            self._queue.put(job["id"])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _ids(self) -> list[str]:
        return [p.stem for p in self.dir.glob("*.json")]

    def submit(self, user_ids: list[int], caller: str) -> dict:
        job = {"id": uuid.uuid4().hex, "status": "queued", "users": len(user_ids),
               "user_ids": user_ids, "caller": caller,
               "submitted_at": datetime.now(UTC).isoformat()}
        self._save(job)  # durable before it is acknowledged
        self._queue.put(job["id"])
        return job

    def get(self, job_id: str) -> dict | None:
        if not (job_id.isascii() and job_id.isalnum()):
            return None
        try:
            return json.loads((self.dir / f"{job_id}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _save(self, job: dict) -> None:
        with self._lock:
            tmp = self.dir / f".{job['id']}.tmp"
            with open(tmp, "w") as handle:
                handle.write(json.dumps(job))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.dir / f"{job['id']}.json")

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            job = self.get(job_id)
            if job is None or job["status"] == "done":
                continue
            attempts = int(job.get("attempts", 0)) + 1
            if attempts > MAX_ATTEMPTS:
                self._save({**job, "status": "failed", "error": (
                    f"gave up after {MAX_ATTEMPTS} attempts (the process stopped or failed "
                    "during each; out of memory?); submit the erasure again once fixed")})
                continue
            job = {**job, "attempts": attempts}
            self._save({**job, "status": "running"})
            try:
                report = self._erase(job["user_ids"], job["caller"])
            except Exception as exc:  # noqa: BLE001 - recorded; retried at the next start
                log.exception("erasure job %s failed", job_id)
                self._save({**job, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
                continue
            # the report names the users as the lake does (pseudonyms when configured)
            self._save({**job, "status": "done", "user_ids": report["users"], "report": report,
                        "finished_at": datetime.now(UTC).isoformat()})


def public(job: dict) -> dict:
    """A job as the API shows it (its ids only through the report)."""
    return {k: v for k, v in job.items() if k != "user_ids"}


class _Handler(BaseHTTPRequestHandler):
    server: ErasureServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s " + format, self.client_address[0], *args)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _admit(self, method: str):
        result = self.server.auth.admit("ingestor", method, self.path,
                                        self.headers.get("Authorization"),
                                        self.client_address[0], audit_admitted=False)
        if not result.ok:
            self._error(result.status, result.message)
            return None
        return result

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/healthz":
            self._json(200, {"status": "ok"})
            return
        if not self.path.startswith("/admin/erasures/"):
            self._error(404, f"no route {self.path[:80]!r}")
            return
        result = self._admit("GET")
        if result is None:
            return
        job = self.server.jobs.get(self.path.rsplit("/", 1)[1])
        audit("ingestor", "GET", self.path, result, 200 if job else 404, self.client_address[0])
        if job is None:
            self._error(404, "no such erasure job")
        else:
            self._json(200, public(job))

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/admin/erasures":
            self._error(404, f"no route {self.path[:80]!r}")
            self.close_connection = True
            return
        result = self._admit("POST")
        if result is None:
            self.close_connection = True
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.close_connection = True
            self._error(411 if not length else 400, "a JSON body with a valid Content-Length "
                                                    "is required")
            return
        if int(length) > self.server.max_body_bytes:
            self.close_connection = True
            self._error(413, f"body over {self.server.max_body_bytes} bytes")
            return
        try:
            body = json.loads(self.rfile.read(int(length)))
            users = body["user_ids"]
            if (not isinstance(users, list) or not users
                    or not all(type(u) is int and 0 <= u < 10**18 for u in users)):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self._error(400, 'expected {"user_ids": [<non-negative integer user id>, ...]}')
            return
        if len(users) > self.server.max_users:
            self._error(413, f"at most {self.server.max_users} users per erasure")
            return
        ids = sorted(set(users))
        pid = self.server.pseudonymize
        job = self.server.jobs.submit([pid(u) for u in ids] if pid else ids, result.caller)
        audit("ingestor", "POST", self.path, result, 202, self.client_address[0],
              f"erasure job {job['id']} of {len(ids)} users")
        self._json(202, public(job), {"Location": f"/admin/erasures/{job['id']}"})


class ErasureServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], jobs: ErasureJobs, auth: AdminAuth, *,
                 pseudonymize=None, max_users: int = MAX_USERS,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        super().__init__(address, _Handler)
        self.jobs, self.auth = jobs, auth
        self.pseudonymize = pseudonymize
        self.max_users, self.max_body_bytes = max_users, max_body_bytes

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(15.0)  # a slow or silent client holds one thread, not for ever
        super().finish_request(request, client_address)


def build(cfg: Any, address: tuple[str, int]) -> ErasureServer:
    """The server over ``cfg``'s lake, online store and registry (not started)."""
    from ingestor.erase import erase_users
    from ingestor.lake import recover
    from movierec_core.online_store import open_store
    from movierec_core.pseudonym import KeyRing, check_lake_key
    from movierec_core.registry import FileRegistry

    lake_root = cfg.data.lake_root
    ring = KeyRing.from_config(cfg.data)
    check_lake_key(lake_root, ring)
    recover(lake_root)

    def erase(lake_ids: list[int], caller: str) -> dict:
        store = open_store(cfg.data) if cfg.ingestor.online_store else None
        try:  # the ids are the lake's already (pseudonymised at submission)
            return erase_users(lake_root, lake_ids, store, FileRegistry(cfg.data.registry_root),
                               caller=caller, pseudonyms=None,
                               key_id=ring.current_id).to_json()
        finally:
            if store is not None:
                store.close()

    jobs = ErasureJobs(lake_root, erase)
    auth = AdminAuth.from_environment(str(cfg.ingestor.admin_token_file or ""))
    return ErasureServer(address, jobs, auth,
                         pseudonymize=ring.current.pid if ring.current else None)


def serve(cfg: Any) -> int:
    # the pod's SIGTERM: stop taking requests, let the running job finish (stop() waits up to
    # 10 s; an unfinished one is run again at the next start) and exit 0
    stop = StopOnSigterm()
    server = build(cfg, (str(cfg.ingestor.admin_host), int(cfg.ingestor.admin_port)))
    server.jobs.start()
    log.info("erasure API on http://%s:%d/admin/erasures", *server.server_address[:2])
    try:
        stop.serve(server)
    finally:
        server.jobs.stop()
        server.server_close()
    return 0
