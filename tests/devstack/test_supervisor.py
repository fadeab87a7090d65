"""The supervisor leaves nothing running: children and grandchildren are stopped or killed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from devstack.supervisor import Supervisor


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie of ours counts as gone once reaped; check /proc state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except OSError:
        return True


def test_stop_all_ends_children_and_grandchildren(tmp_path) -> None:
    with Supervisor(tmp_path) as sup:
        child = sup.start("tree", ["bash", "-c", "sleep 300 & echo $! > grandchild.pid; wait"], cwd=tmp_path)
        for _ in range(50):
            if (tmp_path / "grandchild.pid").exists() and (tmp_path / "grandchild.pid").read_text().strip():
                break
            time.sleep(0.1)
        grandchild = int((tmp_path / "grandchild.pid").read_text())
        assert child.alive()
    assert not child.alive()
    time.sleep(0.2)
    assert _gone(grandchild)


def test_a_child_that_ignores_sigterm_is_killed(tmp_path) -> None:
    sup = Supervisor(tmp_path)
    sup.start("stubborn", ["python", "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(300)"])
    for _ in range(100):
        if "up" in sup.children["stubborn"].log_tail():
            break
        time.sleep(0.05)
    code = sup.stop("stubborn", grace=0.5)
    assert code == -signal.SIGKILL


def test_wait_http_reports_a_dead_child_with_its_log(tmp_path) -> None:
    sup = Supervisor(tmp_path)
    sup.start("dies", ["python", "-c", "print('no config, bye'); raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="no config, bye"):
        sup.wait_http("dies", "http://127.0.0.1:9/never", timeout=10)
    sup.stop_all()


def test_a_crashed_child_with_restart_policy_comes_back(tmp_path) -> None:
    with Supervisor(tmp_path, watch_interval=0.1) as sup:
        child = sup.start("worker", ["python", "-c", "import time; print('up', flush=True); time.sleep(300)"],
                          restart=True)
        first = child.pid
        sup.kill("worker")
        for _ in range(100):
            if child.restarts == 1 and child.alive():
                break
            time.sleep(0.05)
        assert child.restarts == 1
        assert child.alive() and child.pid != first
        assert "restarting" in child.log_tail()
    assert not child.alive()
    assert child.restarts == 1  # stopping it on purpose does not bring it back
