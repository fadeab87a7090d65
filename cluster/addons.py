"""Images of controllers built here from Go sources, imported into the node once per build."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cluster import node, oci
from cluster.layout import BIN, CACHE, PATHS

ARCHIVES = CACHE / "images" / "addons"


def binary_image(name: str, files: Mapping[str, Path], entrypoint: Sequence[str],
                 log: Callable[[str], None] = print) -> Path:
    """A from-scratch image of static binaries ({path in image: binary}), written when a
    binary changed, imported into the node's containerd when it lacks this build."""
    archive = ARCHIVES / (name.replace("/", "_").replace(":", "_") + ".oci.tar")
    source = " ".join(f"{dest}={src.stat().st_size}:{src.stat().st_mtime_ns}"
                      for dest, src in sorted(files.items()))
    stamp = archive.with_suffix(".src")
    if not archive.is_file() or not stamp.is_file() or stamp.read_text() != source:
        oci.write_archive(archive, name, {d: (s.read_bytes(), 0o755) for d, s in files.items()},
                          entrypoint)
        stamp.write_text(source)
    mark = PATHS.root / "imported" / archive.name
    if not mark.is_file() or mark.read_text() != source or not node.image_present(name):
        t0 = time.monotonic()
        node.import_archive(archive)
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(source)
        log(f"images: {name} imported into the node in {time.monotonic() - t0:.0f} s")
    return archive


def binary(name: str) -> Path:
    return BIN / name


PROMETHEUS_VERSION = "v0.316.0"  # the Go module version of Prometheus v3.16


def prometheus_build():
    """Prometheus built from its Go module: Debian's package omits Kubernetes service discovery
    (its 2.42 refuses `kubernetes_sd_configs`), which the chart's in-release Prometheus needs."""
    from cluster import gobuild

    return gobuild.GoBuild(name="prometheus", module="github.com/prometheus/prometheus",
                           version=PROMETHEUS_VERSION,
                           packages=["github.com/prometheus/prometheus/cmd/prometheus",
                                     "github.com/prometheus/prometheus/cmd/promtool"],
                           ldflags=["-X github.com/prometheus/common/version.Version=3.16.0",
                                    f"-X github.com/prometheus/common/version.Revision={PROMETHEUS_VERSION}",
                                    "-X github.com/prometheus/common/version.Branch=go-module"])
