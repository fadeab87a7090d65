"""Generated files stay in sync with their single source of truth:
manifests/ and workflows/ with the chart (golden files), the chart's monitoring copies with
monitoring/, and every value in values.yaml carries a `# --` description."""

from __future__ import annotations

import difflib
import re

import pytest

from tests.k8s.conftest import CHART, REPO_ROOT, render_tool, require_tool

GOLDEN = [
    "manifests/movierec.yaml",
    "workflows/retrain-workflowtemplate.yaml",
    "workflows/retrain-cronworkflow.yaml",
    "workflows/retrain-run.yaml",
]


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    require_tool(render_tool.HELM)
    return {str(p.relative_to(REPO_ROOT)): text for p, text in render_tool.expected_files().items()}


def test_every_generated_file_is_pinned(expected: dict[str, str]) -> None:
    assert sorted(expected) == sorted(GOLDEN)


@pytest.mark.parametrize("relpath", GOLDEN)
def test_golden_file_matches_a_fresh_render(expected: dict[str, str], relpath: str) -> None:
    path = REPO_ROOT / relpath
    assert path.exists(), f"{relpath} missing: run `make manifests`"
    actual = path.read_text()
    if actual != expected[relpath]:
        diff = "".join(difflib.unified_diff(actual.splitlines(True), expected[relpath].splitlines(True),
                                            relpath, "fresh render", n=2))
        pytest.fail(f"{relpath} is stale: run `make manifests`\n{diff[:4000]}")


def test_chart_monitoring_copies_match_monitoring_dir() -> None:
    """monitoring/ is the single source; the chart carries byte-identical copies (`make chart-sync`)."""
    source = REPO_ROOT / "monitoring"
    copies = CHART / "files" / "monitoring"
    wanted = {}
    if (source / "alerts.yaml").exists():
        wanted["alerts.yaml"] = (source / "alerts.yaml").read_bytes()
    for f in sorted((source / "dashboards").glob("*.json")):
        wanted[f"dashboards/{f.name}"] = f.read_bytes()
    present = {str(p.relative_to(copies)): p.read_bytes()
               for p in copies.rglob("*") if p.is_file() and p.name != ".keep"}
    assert sorted(present) == sorted(wanted), "run `make chart-sync`"
    for name in wanted:
        assert present[name] == wanted[name], f"{name} differs from monitoring/: run `make chart-sync`"


def test_prometheus_rule_comes_from_the_alerts_file_or_has_a_p99_alert() -> None:
    from tests.k8s.conftest import objects, render

    (rule,) = [o for o in objects(render(None)) if o["kind"] == "PrometheusRule"]
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert any("histogram_quantile(0.99" in e and "0.6" in e for e in exprs)
    if (REPO_ROOT / "monitoring" / "alerts.yaml").exists():
        assert rule["metadata"]["annotations"]["movierec.io/rules-source"] == "monitoring/alerts.yaml"


def test_dashboards_configmap_is_labelled_for_grafana() -> None:
    from tests.k8s.conftest import objects, render

    (cm,) = [o for o in objects(render(None))
             if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "movierec-dashboards"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    synced = sorted(p.name for p in (REPO_ROOT / "monitoring" / "dashboards").glob("*.json"))
    assert sorted(cm["data"]) == (synced or ["movierec-overview.json"])


KEY_LINE = re.compile(r"^(\s*)([A-Za-z][A-Za-z0-9_]*):")


def _inside_list_item(lines: list[str], i: int, indent: int) -> bool:
    """Fields of a list item (`- name: x` / `  weight: 1`) are documented by the list's key."""
    for prev in reversed(lines[:i]):
        stripped = prev.strip()
        if not stripped or stripped.startswith("#"):
            continue
        prev_indent = len(prev) - len(prev.lstrip())
        if prev_indent < indent:
            return stripped.startswith("- ")
    return False


def test_every_value_is_documented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if not match or _inside_list_item(lines, i, len(match.group(1))):
            continue
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1  # continuation lines of a multi-line description
        if j < 0 or not lines[j].strip().startswith("# --"):
            undocumented.append(f"values.yaml:{i + 1}: {line.strip()}")
    assert undocumented == []
