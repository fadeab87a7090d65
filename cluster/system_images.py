"""The cluster's own images: pause (the sandbox every pod's containers join) and CoreDNS.

pause is Kubernetes' own ``build/pause/linux/pause.c`` from the k8s.io/kubernetes module, linked
statically; CoreDNS is built from its Go module. Both become from-scratch OCI images (cluster.oci)
imported into containerd's k8s.io namespace under ``localhost/movierec/...`` names.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from cluster import gobuild, oci
from cluster.layout import BIN, COREDNS_VERSION, KUBERNETES_VERSION
from cluster.node import PAUSE_IMAGE, SYSTEM_ARCHIVES

COREDNS = gobuild.GoBuild(name="coredns", module="github.com/coredns/coredns",
                          version=COREDNS_VERSION, packages=["github.com/coredns/coredns"])
COREDNS_IMAGE = f"localhost/movierec/coredns:{COREDNS_VERSION.removeprefix('v')}"


def build_pause(log: Callable[[str], None] = print) -> Path:
    out = BIN / "pause"
    stamp = BIN / ".pause.stamp"
    recipe = f"k8s.io/kubernetes@{KUBERNETES_VERSION} build/pause/linux/pause.c gcc -static"
    if out.is_file() and stamp.is_file() and stamp.read_text().strip() == recipe:
        return out
    src = gobuild.module_dir("k8s.io/kubernetes", KUBERNETES_VERSION) / "build/pause/linux/pause.c"
    BIN.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-Os", "-Wall", "-Werror", "-static", "-s",
                    f'-DVERSION="{PAUSE_IMAGE.rsplit(":", 1)[1]}-movierec"', "-o", str(out),
                    str(src)], check=True)
    stamp.write_text(recipe + "\n")
    log(f"images: pause built from {src.name}")
    return out


def archives(log: Callable[[str], None] = print) -> dict[str, Path]:
    """Build both binaries and their OCI archives when missing; {image name: archive path}."""
    pause = build_pause(log)
    gobuild.build(COREDNS, log)
    out = {}
    for name, binary, entry, ports in (
            (PAUSE_IMAGE, pause, ["/pause"], ()),
            (COREDNS_IMAGE, BIN / "coredns", ["/coredns"], ("1053/udp", "1053/tcp"))):
        archive = SYSTEM_ARCHIVES / (name.replace("/", "_").replace(":", "_") + ".oci.tar")
        stamp = archive.with_suffix(".src")
        source = f"{binary.stat().st_size} {binary.stat().st_mtime_ns}"
        if not archive.is_file() or not stamp.is_file() or stamp.read_text() != source:
            oci.write_archive(archive, name, {binary.name: (binary.read_bytes(), 0o755)}, entry,
                              ports=ports)
            stamp.write_text(source)
        out[name] = archive
    return out
