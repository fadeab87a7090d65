"""Slices of a 1-D ``.npy`` file read on demand with ``os.pread``, without mapping it.

For bundle data a request needs rarely: the training confidences are read only to decide and
build a fold-in (users with fresh events in the online store). Memory-mapped, the kernel's
fault-around maps 64 KiB around every touched page, so after a few thousand such requests the
whole file sat in the server's resident set (30 MiB for 8M interactions in ``bench/serve.py``);
read with ``pread`` it stays in the page cache, shared and reclaimable, at ~2 us per read.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import numpy as np


class NpyRows:
    """``rows[start:end]`` of a 1-D ``.npy`` array, as a new ndarray per read."""

    def __init__(self, path: Path | str) -> None:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(fh)
            self.offset = fh.tell()
        if len(shape) != 1 or dtype.hasobject:
            raise ValueError(f"{path}: expected a 1-D numeric array, got shape {shape} {dtype}")
        del fortran_order  # irrelevant in one dimension
        self.dtype = dtype
        self.size = int(shape[0])
        self._fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("NpyRows supports contiguous slices only")
        start, stop, _ = key.indices(self.size)
        n = max(stop - start, 0)
        if n == 0:
            return np.empty(0, dtype=self.dtype)
        width = self.dtype.itemsize
        data = os.pread(self._fd, n * width, self.offset + start * width)
        if len(data) != n * width:
            raise OSError(f"short read: {len(data)} of {n * width} bytes")
        return np.frombuffer(data, dtype=self.dtype)
