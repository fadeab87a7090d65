"""RotatingFile: bounded size, whole writes, newest kept, safe from several threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from movierec_core.rotating import RotatingFile


def test_rotates_before_a_write_would_exceed_the_limit_and_keeps_backups(tmp_path: Path) -> None:
    f = RotatingFile(tmp_path / "log", max_bytes=10, backups=2)
    for chunk in (b"aaaa\n", b"bbbb\n", b"cccc\n", b"dddd\n", b"eeee\n"):
        f.write(chunk)
    f.close()
    assert (tmp_path / "log").read_bytes() == b"eeee\n"
    assert (tmp_path / "log.1").read_bytes() == b"cccc\ndddd\n"
    assert (tmp_path / "log.2").read_bytes() == b"aaaa\nbbbb\n"
    assert not (tmp_path / "log.3").exists()


def test_a_write_larger_than_the_limit_is_never_split(tmp_path: Path) -> None:
    f = RotatingFile(tmp_path / "log", max_bytes=4, backups=1)
    f.write(b"0123456789\n")
    f.write(b"x\n")
    f.close()
    assert (tmp_path / "log.1").read_bytes() == b"0123456789\n"
    assert (tmp_path / "log").read_bytes() == b"x\n"


def test_no_backups_truncates_and_zero_never_rotates(tmp_path: Path) -> None:
    f = RotatingFile(tmp_path / "a", max_bytes=4, backups=0)
    f.write(b"111\n")
    f.write(b"222\n")
    f.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert (tmp_path / "a").read_bytes() == b"222\n"
    g = RotatingFile(tmp_path / "b", max_bytes=0)
    for _ in range(100):
        g.write(b"x\n")
    g.close()
    assert (tmp_path / "b").stat().st_size == 200 and not (tmp_path / "b.1").exists()
    with pytest.raises(ValueError):
        RotatingFile(tmp_path / "c", max_bytes=-1)


def test_threads_never_interleave_within_a_line(tmp_path: Path) -> None:
    f = RotatingFile(tmp_path / "log", max_bytes=5000, backups=50)

    def writer(tag: str) -> None:
        for i in range(500):
            f.write(f"{tag}-{i:04d}\n".encode())

    threads = [threading.Thread(target=writer, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f.close()
    lines = [line for p in tmp_path.iterdir() for line in p.read_text().splitlines()]
    assert len(lines) == 2000 and all(len(line) == 6 for line in lines)
