"""make cluster-test's report: the canary's outcome read from step logs (with or without
kubectl's --prefix), the targets, and a recheck from saved logs."""

from __future__ import annotations

import json

from demo.cluster_test import ClusterTest, recheck, targets_of

LINE = ('{"experiment": "baseline", "outcome": "promoted", "final_percent": 100, '
        '"windows": 3, "report": "/tmp/r.md"}')


def test_the_canary_outcome_is_found_with_or_without_a_pod_prefix() -> None:
    prefixed = ("[pod/wf-canary-1/main] 2026-12-01 14:18:03,012 kafka INFO closed\n"
                f"[pod/wf-canary-1/main] {LINE}\n"
                '[pod/wf-canary-1/main] time="..." level=info msg="sub-process exited"')
    assert ClusterTest.canary_outcome(prefixed)["outcome"] == "promoted"
    assert ClusterTest.canary_outcome(f"noise\n{LINE}\n")["windows"] == 3
    assert ClusterTest.canary_outcome("no json here\n{not json}") is None


def test_targets_and_a_recheck_from_saved_logs(tmp_path) -> None:
    figures = {
        "workflows": {
            "promotion": {"name": "wf-a", "phase": "Succeeded", "canary": None,
                          "champion_after": "v0002", "primary_serves": "v0002", "steps": {}},
            "gate_failed": {"name": "wf-b", "phase": "Failed", "versions_before": 2,
                            "versions_after": 2, "steps": {"quality-gate": {"phase": "Failed", "message": "Error (exit code 1): quality gate: ndcg@10 0.2 < floor 0.99"}}},
            "rollback": {"name": "wf-c", "phase": "Succeeded",
                         "canary": {"outcome": "rolled_back", "windows": 2}, "steps": {}}},
        "requests": {"requests": 100, "failed": 0},
        "cron": {"fired": "wf-d", "second_waited_for_lock": "Waiting for lock"},
        "alerts_first_firing": {"MovierecNoNewChampion": "t", "MovierecCanaryRolledBack": "t"},
        "screenshot": {"ok": True}, "date": "2026-12-01T14:40:00+00:00",
    }
    before = targets_of(figures)
    assert not before["canary promoted the challenger"]
    assert sum(before.values()) == len(before) - 1
    figures["targets"] = before
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(figures))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "workflow-wf-a.log").write_text(f"[pod/wf-a-canary/main] {LINE}\n")
    assert recheck(tmp_path, path) == 0
    after = json.loads(path.read_text())
    assert all(after["targets"].values())
    assert after["workflows"]["promotion"]["canary"]["outcome"] == "promoted"
    assert after["date"] == figures["date"] and "promotion" in after["rechecked"]


def test_the_canary_outcome_carries_the_controllers_last_verdict() -> None:
    logs = ("[pod/x/main] 2026 INFO window 0 at 5 %: hold ['estimate below the margin']\n"
            "[pod/x/main] 2026 INFO window 1 at 5 %: rollback ['p99 153 ms vs champion 98 ms']\n"
            '[pod/x/main] {"experiment": "baseline", "outcome": "rolled_back", "windows": 2}\n')
    found = ClusterTest.canary_outcome(logs)
    assert found["outcome"] == "rolled_back"
    assert found["last_decision"] == "window 1 at 5 %: rollback ['p99 153 ms vs champion 98 ms']"
    assert "last_decision" not in ClusterTest.canary_outcome(f"{LINE}\n")
