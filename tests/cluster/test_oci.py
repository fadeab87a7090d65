"""From-scratch OCI archives (pause, CoreDNS): valid layout, content-addressed, reproducible."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from cluster import oci


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_archive_is_a_content_addressed_oci_layout(tmp_path: Path) -> None:
    out = tmp_path / "img.tar"
    digest = oci.write_archive(out, "localhost/movierec/x:1", {"x": (b"#!binary", 0o755)}, ["/x"])
    files = _members(out)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["digest"] == digest
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/movierec/x:1"
    manifest = json.loads(files[f"blobs/sha256/{digest.split(':')[1]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"]["Entrypoint"] == ["/x"] and config["config"]["User"] == "65532:65532"
    layer = files[f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}"]
    raw = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.getmember("x")
        assert member.mode == 0o755 and tar.extractfile(member).read() == b"#!binary"


def test_same_input_same_digest(tmp_path: Path) -> None:
    args = ("localhost/movierec/x:1", {"bin/x": (b"abc", 0o755)}, ["/bin/x"])
    assert oci.write_archive(tmp_path / "a.tar", *args) == oci.write_archive(tmp_path / "b.tar", *args)
    other = oci.write_archive(tmp_path / "c.tar", "localhost/movierec/x:1",
                              {"bin/x": (b"abd", 0o755)}, ["/bin/x"])
    assert other != oci.write_archive(tmp_path / "a.tar", *args)
