"""Keep a snapshot's freed buffers from staying resident (glibc's malloc only; elsewhere a no-op).

A snapshot allocates and frees many buffers of 0.25-16 MiB (sealed packs, blocks, compressed
blobs) in several threads. glibc serves the first of a size by mmap and returns it to the kernel
on free, but then raises its mmap threshold to that size, so later buffers come from the heaps,
where freed memory mostly stays resident. Measured on the benchmark's 1 GB corpus (first
snapshot, the process that walks): 239-243 MiB peak RSS by default, 196-213 MiB with the
threshold fixed at 256 KiB. Both snapshot processes (the walk and the helper) call
`bound_freed_memory` before they allocate their buffers.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD = 256 << 10


def bound_freed_memory() -> bool:
    """Fix malloc's mmap threshold (buffers at least that big go back to the kernel when freed,
    whatever was freed before). True if set; False where there is no glibc mallopt."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
