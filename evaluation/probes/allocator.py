"""Let glibc reuse freed activation memory, so that probe training does not page-fault on every step.

A training step of a bank of heads allocates and frees dozens of tensors of 16-64 MB ([batch, heads x hidden]
float32). glibc serves blocks above its mmap threshold (adaptive, never above 32 MiB) with fresh mmaps and hands
them back on free, so each such tensor is paid again in page faults and kernel zeroing: on the 2-core AMD EPYC a
DCASE-sized step of 8 one-hidden-layer heads took 325 ms this way and 210 ms with the thresholds below (the matrix
products alone need ~205 ms there). Blocks from ``MMAP_THRESHOLD`` up (embedding matrices) still get their own
mapping and go back to the system when freed; up to ``TRIM_THRESHOLD`` of free memory stays at the heap's top.
"""

from __future__ import annotations

import ctypes
import functools
import platform

MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20
_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, <malloc.h>
_M_MMAP_THRESHOLD = -3


@functools.cache
def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False (nothing changed) where the C library is not
    glibc or refuses the values."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
