"""The erasure API (issue 21) as the account system calls it: the real
``python -m ingestor erasure-api`` process, its token, its refusals, a job that erases a user
everywhere, and a job accepted before a crash that is finished after the restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.ports import free_port, wait_for_port
from ingestor.erasure_api import JOBS_DIR
from movierec_core.erasure import ledger_entries
from movierec_core.online_store import SqliteOnlineStore
from tests.ingestor.test_erasure import ERASED, KEPT, platform, rows_of  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]
TOKEN = "erasure-test-token-0123456789abcdef"


@pytest.fixture
def api(platform: dict, tmp_path: Path) -> Iterator[dict]:  # noqa: F811 - the fixture above
    yield from _start(platform, tmp_path)


def _start(setup: dict, tmp_path: Path) -> Iterator[dict]:
    port = free_port()
    log = open(tmp_path / "api.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingestor", "erasure-api", f"ingestor.admin_port={port}",
         f"data.lake_root={setup['lake']}", f"data.online_store_path={setup['store']}",
         f"data.registry_root={setup['registry']}"],
        cwd=REPO, env={**os.environ, "MOVIEREC_ADMIN_TOKEN": TOKEN}, stdout=log,
        stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, \
            (tmp_path / "api.log").read_text()[-2000:]
        time.sleep(0.2)
    try:
        yield {"url": url, "log": tmp_path / "api.log", **setup}
    finally:
        proc.terminate()
        proc.wait(30)


def wait_done(url: str, location: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        job = httpx.get(f"{url}{location}", headers=AUTH).json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_refusals_say_why_and_change_nothing(api: dict) -> None:
    url, erasures = api["url"], f"{api['url']}/admin/erasures"
    before = rows_of(api["lake"], ERASED)
    assert httpx.post(erasures, json={"user_ids": [ERASED]}).status_code == 401
    wrong = httpx.post(erasures, json={"user_ids": [ERASED]},
                       headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()) == (403, {"error": "wrong admin token"})
    for body, status in (({"user_ids": []}, 400), ({"user_ids": ["42"]}, 400),
                         ({"user_ids": [-1]}, 400), ({"users": [1]}, 400),
                         ({"user_ids": [10**18]}, 400),
                         ({"user_ids": list(range(1001))}, 413)):
        answer = httpx.post(erasures, json=body, headers=AUTH)
        assert answer.status_code == status, (body, answer.text)
        assert "error" in answer.json()
    huge = httpx.post(erasures, content=b"{" + b" " * 70_000 + b"}", headers=AUTH)
    assert huge.status_code == 413
    assert httpx.get(f"{url}/admin/erasures/0123abcd", headers=AUTH).status_code == 404
    assert httpx.get(f"{url}/admin/erasures/x", headers={}).status_code == 401
    assert rows_of(api["lake"], ERASED) == before and not ledger_entries(api["lake"])
    log = api["log"].read_text()
    assert "audit service=ingestor caller=" in log and TOKEN not in log


def test_an_accepted_erasure_removes_the_user_everywhere(api: dict) -> None:
    answer = httpx.post(f"{api['url']}/admin/erasures", json={"user_ids": [ERASED, ERASED]},
                        headers=AUTH)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["Location"] == f"/admin/erasures/{job['id']}"
    assert (job["status"], job["users"]) == ("queued", 1) and "user_ids" not in job
    done = wait_done(api["url"], answer.headers["Location"])
    assert done["status"] == "done", done
    report = done["report"]
    assert report["users"] == [ERASED]
    assert report["lake_rows"]["watch_minutes"] == 60 and report["versions_marked"]
    assert rows_of(api["lake"], ERASED) == {} and rows_of(api["lake"], KEPT)
    store = SqliteOnlineStore(api["store"])
    assert store.erased_users() == {ERASED} and store.interactions(ERASED) == []
    store.close()
    assert "caller=token:" in api["log"].read_text()


def test_a_job_accepted_before_a_crash_is_finished_after_the_restart(platform: dict,  # noqa: F811
                                                                      tmp_path: Path) -> None:
    jobs = Path(platform["lake"]) / JOBS_DIR
    jobs.mkdir(parents=True)
    (jobs / "abc123.json").write_text(json.dumps({
        "id": "abc123", "status": "running", "users": 1, "user_ids": [ERASED],
        "caller": "token:12345678", "submitted_at": "2026-12-01T00:00:00+00:00"}))
    for api in _start(platform, tmp_path):
        done = wait_done(api["url"], "/admin/erasures/abc123")
        assert done["status"] == "done" and done["report"]["users"] == [ERASED]
        assert rows_of(api["lake"], ERASED) == {}


def test_a_job_the_process_keeps_dying_in_is_given_up(platform: dict,  # noqa: F811
                                                      tmp_path: Path) -> None:
    jobs = Path(platform["lake"]) / JOBS_DIR
    jobs.mkdir(parents=True)
    (jobs / "def456.json").write_text(json.dumps({
        "id": "def456", "status": "running", "attempts": 3, "users": 1, "user_ids": [ERASED],
        "caller": "token:12345678", "submitted_at": "2026-12-01T00:00:00+00:00"}))
    for api in _start(platform, tmp_path):
        job = wait_done(api["url"], "/admin/erasures/def456")
        assert job["status"] == "failed" and "gave up after 3 attempts" in job["error"]
        assert rows_of(api["lake"], ERASED)  # nothing erased by it


def test_sigterm_stops_the_api_cleanly(platform: dict, tmp_path: Path) -> None:  # noqa: F811
    """Kubernetes stops the pod's sidecar with SIGTERM: it exits 0 at once, its jobs stopped,
    instead of dying by the signal (-15)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingestor", "erasure-api", f"ingestor.admin_port={port}",
         f"data.lake_root={platform['lake']}", f"data.online_store_path={platform['store']}",
         f"data.registry_root={platform['registry']}"],
        cwd=REPO, env={**os.environ, "MOVIEREC_ADMIN_TOKEN": TOKEN},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for_port("127.0.0.1", port, timeout=60)
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
    finally:
        proc.kill()
        proc.wait()
