"""Let glibc reuse freed activation memory, so that probe training does not page-fault on every step.

A training step of a bank of heads allocates and frees dozens of tensors of 16-64 MB ([batch, heads x hidden]
float32) and, with wide embeddings, weight gradients of hundreds of MB (8 heads x 1024 x 9216 float32: 302 MB).
glibc serves blocks above its mmap threshold (adaptive, never above 32 MiB) with fresh mmaps and hands them back on
free, so each such tensor is paid again in page faults and kernel zeroing. On the 2-core AMD EPYC, a DCASE-sized
step of 8 one-hidden-layer heads (D = 768) took 325 ms this way and 210 ms with these thresholds (the matrix
products alone need ~140 ms at the fp32 peak); at D = 9216 a step took 2.17 s (fp32) / 1.08 s (bf16) with a
256 MiB threshold and 1.88 s / 0.90 s with 1 GiB. Blocks from ``MMAP_THRESHOLD`` up (large embedding matrices)
still get their own mapping and go back to the system when freed; up to ``TRIM_THRESHOLD`` of free memory stays at
the heap's top for reuse instead of going back (the process's resident size can stay that much above what it uses).
"""

from __future__ import annotations

import ctypes
import functools
import platform

MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 2 << 30
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
