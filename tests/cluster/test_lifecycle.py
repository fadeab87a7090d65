"""What ``down`` looks for: the cluster's mounts, and readiness judged on fresh status only."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from cluster import lifecycle
from cluster.layout import PATHS


def test_cluster_mounts_are_those_under_its_directories_and_the_pods_netns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mounts = [("/", "ext4"), (str(PATHS.kubelet_dir / "pods/x/volumes/token"), "tmpfs"),
              (str(PATHS.run / "containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs"), "overlay"),
              ("/run/netns/cni-1234", "nsfs"), ("/run/netns/other", "nsfs"),
              (str(PATHS.netns_file), "nsfs"), (str(PATHS.root) + "-other/x", "tmpfs")]
    monkeypatch.setattr(lifecycle, "_mountinfo", lambda: mounts)
    assert lifecycle.cluster_mounts() == [mounts[1][0], mounts[2][0], "/run/netns/cni-1234",
                                          str(PATHS.netns_file)]


def _pods(started: str, ready: str = "True") -> str:
    return json.dumps({"items": [{"status": {
        "conditions": [{"type": "Ready", "status": ready}],
        "containerStatuses": [{"state": {"running": {"startedAt": started}}}]}}]})


def test_pods_ready_ignores_status_left_in_etcd_by_an_earlier_node(
        monkeypatch: pytest.MonkeyPatch) -> None:
    answer = {}
    monkeypatch.setattr(lifecycle, "kubectl",
                        lambda *a, **k: SimpleNamespace(returncode=0, stdout=answer["out"]))
    since = lifecycle._since("2026-12-01T10:00:00Z")
    answer["out"] = _pods("2026-12-01T09:59:00Z")
    assert not lifecycle.pods_ready("kube-system", "k8s-app=kube-dns", since)
    answer["out"] = _pods("2026-12-01T10:00:05Z")
    assert lifecycle.pods_ready("kube-system", "k8s-app=kube-dns", since)
    answer["out"] = _pods("2026-12-01T10:00:05Z", ready="False")
    assert not lifecycle.pods_ready("kube-system", "k8s-app=kube-dns", since)
    answer["out"] = json.dumps({"items": []})
    assert not lifecycle.pods_ready("kube-system", "k8s-app=kube-dns", since)
