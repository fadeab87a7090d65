"""Every command answers ``--help`` with exit 0 and a usage text, and never starts a service."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# (package, subcommand or None, a word the usage must contain)
COMMANDS = [
    ("ingestor", None, "snapshot"), ("ingestor", "snapshot", "snapshot"),
    ("trainer", None, "python -m trainer"),
    ("model_server", None, "/recommend"),
    ("experiments", None, "router"), ("experiments", "router", "router"),
    ("experiments", "canary", "canary"),
    ("drift", None, "online"), ("drift", "online", "online"),
    ("simulator", None, "endpoint"), ("simulator", "api", "metadata API"),
    ("demo", None, "usage"),
    ("cluster", None, "Kubernetes"), ("cluster", "up", "usage"),
    ("experiments", "aa-study", "peeking"),
]


@pytest.mark.parametrize(("package", "sub", "word"), COMMANDS,
                         ids=[f"{p}-{s or 'main'}" for p, s, _ in COMMANDS])
def test_help_exits_zero_with_usage(package: str, sub: str | None, word: str) -> None:
    argv = [sys.executable, "-m", package, *([sub] if sub else []), "--help"]
    res = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert word in res.stdout


BENCHES = sorted(p.name for p in (REPO_ROOT / "bench").glob("*.py")
                 if p.name not in ("__init__.py", "common.py"))


@pytest.mark.parametrize("script", BENCHES)
def test_every_benchmark_answers_help(script: str) -> None:
    res = subprocess.run([sys.executable, f"bench/{script}", "--help"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage" in res.stdout
