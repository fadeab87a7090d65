"""Minimal OCI image archives for from-scratch images of static binaries (pause, CoreDNS).

An OCI image is a layer tarball, a config, a manifest and an index; containerd imports the archive
(``ctr images import``) under the name in the ``io.containerd.image.name`` annotation. The project's
own images are built with buildah from docker/ (cluster.images); these two need no base image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

EPOCH = 0  # fixed mtimes: the same binary gives the same image digest


def _tar_bytes(members: Mapping[str, tuple[bytes, int]],
               extra_dirs: Mapping[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {str(parent): 0o755 for p in members for parent in Path(p).parents
                if str(parent) != "."}
        dirs.update(extra_dirs or {})
        for d, mode in sorted(dirs.items()):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, EPOCH
            tar.addfile(info)
        for path, (data, mode) in sorted(members.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, EPOCH
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest


def write_archive(out: Path, name: str, files: Mapping[str, tuple[bytes, int]],
                  entrypoint: Sequence[str], user: str = "65532:65532",
                  ports: Sequence[str] = ()) -> str:
    """Write an OCI archive with one layer holding ``files`` ({path: (bytes, mode)}).

    Returns the manifest digest.
    """
    blobs: dict[str, bytes] = {}
    layer_tar = _tar_bytes(files, {"tmp": 0o1777})  # as distroless images have
    layer_gz = gzip.compress(layer_tar, mtime=EPOCH)
    layer = _blob(blobs, layer_gz)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": list(entrypoint), "User": user, "WorkingDir": "/",
                   "ExposedPorts": {p: {} for p in ports},
                   "Labels": {"org.opencontainers.image.title": name}},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created_by": "movierec cluster.oci"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = _blob(blobs, config_bytes)
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer, "size": len(layer_gz)}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = _blob(blobs, manifest_bytes)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": len(manifest_bytes),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}]}
    members = {"oci-layout": (json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644),
               "index.json": (json.dumps(index, sort_keys=True).encode(), 0o644)}
    for digest, data in blobs.items():
        members[f"blobs/sha256/{digest.split(':', 1)[1]}"] = (data, 0o644)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(_tar_bytes(members))
    tmp.replace(out)
    return manifest_digest
