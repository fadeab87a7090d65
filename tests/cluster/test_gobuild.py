"""Wrapper-module builds: which replace lines the wrapper carries, and when a build is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster import gobuild

GOMOD = """module k8s.io/kubernetes

go 1.24.0

require (
\tgithub.com/foo/bar v1.2.3
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go // a comment
\tgithub.com/old/mod v1.0.0 => github.com/fork/mod v1.0.1
\tgithub.com/local/tool => ../tool
)

replace github.com/single/line => github.com/single/fork v0.2.0
"""


def test_copied_replaces_keeps_published_targets_and_drops_local_paths() -> None:
    assert gobuild.copied_replaces(GOMOD) == [
        "replace github.com/old/mod v1.0.0 => github.com/fork/mod v1.0.1",
        "replace github.com/single/line => github.com/single/fork v0.2.0",
    ]


def test_staging_replaces_point_each_staging_module_at_its_published_twin() -> None:
    assert gobuild.staging_replaces(GOMOD, "v1.34.4") == [
        "replace k8s.io/api => k8s.io/api v0.34.4",
        "replace k8s.io/client-go => k8s.io/client-go v0.34.4",
    ]


def test_kubernetes_ldflags_stamp_the_version_kubectl_version_reports() -> None:
    flags = gobuild.kubernetes_ldflags("v1.34.4")
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.4" in flags
    assert "-X k8s.io/component-base/version.gitMinor=34" in flags


def test_the_kubernetes_build_makes_every_node_binary() -> None:
    assert gobuild.KUBERNETES.binaries == ["kube-apiserver", "kube-controller-manager",
                                          "kube-scheduler", "kubelet", "kube-proxy", "kubectl"]


def test_is_current_only_for_the_same_recipe_with_every_binary(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gobuild, "BIN", tmp_path)
    b = gobuild.GoBuild("x", "example.com/x", "v1.0.0", ["example.com/x/cmd/a", "example.com/x/cmd/b"])
    assert not gobuild.is_current(b)
    (tmp_path / "a").write_text("")
    (tmp_path / "b").write_text("")
    gobuild.stamp_path(b).write_text(gobuild.stamp(b) + "\n")
    assert gobuild.is_current(b)
    newer = gobuild.GoBuild("x", "example.com/x", "v1.0.1", b.packages)
    assert not gobuild.is_current(newer)
    flagged = gobuild.GoBuild("x", "example.com/x", "v1.0.0", b.packages, ldflags=["-X a=b"])
    assert not gobuild.is_current(flagged)
    (tmp_path / "b").unlink()
    assert not gobuild.is_current(b)
