"""The alert rules and the demo Prometheus config, checked and unit-tested by promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "monitoring"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: `make apt-deps` installs the prometheus package"
)


def _promtool(*args: str) -> None:
    proc = subprocess.run(
        [PROMTOOL, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"


def test_alert_rules_are_valid() -> None:
    _promtool("check", "rules", "monitoring/alerts.yaml")


def test_alert_rule_unit_tests_pass() -> None:
    tests = sorted(str(p.relative_to(REPO_ROOT)) for p in (MONITORING / "tests").glob("*.yaml"))
    assert tests
    _promtool("test", "rules", *tests)


def test_demo_prometheus_config_is_valid() -> None:
    _promtool("check", "config", "monitoring/prometheus-demo.yml")


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """Each alert appears in a promtool case expecting it and in one expecting silence."""
    import yaml

    alerts = [
        rule["alert"]
        for group in yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    fired, quiet = set(), set()
    for path in (MONITORING / "tests").glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert sorted(set(alerts) - fired) == []
    assert sorted(set(alerts) - quiet) == []
