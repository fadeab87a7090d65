"""The README's benchmark table is what bench/publish.py renders from bench/results."""

from __future__ import annotations

import json

import pytest

from bench import publish


def test_generated_tables_equal_the_results_files() -> None:
    for path, begin, end, render in publish.documents():
        text = path.read_text()
        assert publish.replace_table(text, render(), begin, end) == text, (
            f"{path.name}'s generated figures are stale: run `python bench/publish.py`")


def test_every_published_result_is_a_full_run_or_shown_as_withdrawn() -> None:
    table = publish.table()
    for name, script, _row in publish.ROWS:
        result = json.loads((publish.RESULTS / f"{name}.json").read_text())
        row = next(line for line in table.splitlines() if f"`{script}`" in line)
        if "withdrawn" not in row:
            assert publish.is_current(result) and result["quick"] is False, name
            assert {"load_average_1m_after", "targets"} <= result.keys(), name


def test_a_quick_result_is_refused(tmp_path, monkeypatch) -> None:
    (tmp_path / "parse.json").write_text(json.dumps({"quick": True}))
    monkeypatch.setattr(publish, "RESULTS", tmp_path)
    with pytest.raises(SystemExit, match="quick"):
        publish.load("parse")


def test_a_changed_figure_makes_the_check_fail(tmp_path, monkeypatch) -> None:
    results = tmp_path / "results"
    results.mkdir()
    for name, _script, _row in publish.ROWS:
        data = json.loads((publish.RESULTS / f"{name}.json").read_text())
        if name == "cost_tradeoff":  # the lambda = 0.5 point keeps half the nDCG now
            for point in data["curve"]:
                if point["lambda"] == 0.5:
                    point["ndcg_at_20"] /= 2
        (results / f"{name}.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text(publish.README.read_text())
    monkeypatch.setattr(publish, "RESULTS", results)
    monkeypatch.setattr(publish, "README", readme)
    monkeypatch.setattr(publish, "documents", lambda: [(readme, publish.BEGIN, publish.END,
                                                        publish.table)])
    assert publish.main(["--check"]) == 1
    assert publish.main([]) == 0
    assert publish.main(["--check"]) == 0
