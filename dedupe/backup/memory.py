"""Keep a snapshot's freed buffers from staying resident (glibc's malloc only; elsewhere a no-op).

A snapshot allocates and frees many buffers of 0.25-16 MiB (sealed packs, blocks, compressed
blobs) in several threads. glibc serves the first of a size by mmap and returns it to the kernel
on free, but then raises its mmap threshold to that size, so later buffers come from the heaps,
where freed memory mostly stays resident. Measured on the benchmark's 1 GB corpus (first
snapshot, the process that walks): 239-243 MiB peak RSS by default, 196-213 MiB with the
threshold fixed at 256 KiB. Both snapshot processes (the walk and the helper) call
`bound_freed_memory` before they allocate their buffers.

The threshold sits just above 256 KiB, not at it, and the heap is trimmed only past 512 KiB free:
msgpack allocates a 256 KiB buffer for every `packb` (trees, folder digests, index files), and
with the threshold at exactly 256 KiB (or glibc's default 128 KiB trim) each call paid an
mmap, a munmap and the page faults in between: 20 us instead of 1 per call (about three calls
per folder). Measured on the benchmark corpus's 23k patient folders alone: 180k -> 122k page
faults, 5.0 -> 4.0 s wall with the collector change below (medians of 3, busy machine).

The walk also keeps Python's cyclic collector from re-reading what it cannot free
(`fewer_collections`): the walking process of a first snapshot of the 1 GB corpus spent 0.41
CPU-seconds in the collector (0.09 with it), re-reading the modules and caches loaded before the
walk although the walk makes almost no reference cycles.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
# Above msgpack's 256 KiB Packer buffer (see above); larger buffers still go back when freed.
MMAP_THRESHOLD = (256 + 4) << 10
# Free memory at the top of a heap is handed back past this (glibc's default is 128 KiB).
TRIM_THRESHOLD = 512 << 10


def bound_freed_memory() -> bool:
    """Fix malloc's mmap threshold (buffers at least that big go back to the kernel when freed,
    whatever was freed before) and its trim threshold. True if set; False where there is no
    glibc mallopt."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


# During a walk, the collector's youngest generation is collected after this many new
# container objects instead of 700: a few MiB of young objects at most, and a reference cycle
# (an exception's traceback) still goes within a fraction of a second of walking.
WALK_GC_THRESHOLD = 50_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Around a walk: objects alive before it are frozen out of the cyclic collector's reach
    (`gc.freeze`), and young objects are collected in larger batches. Both are undone on exit,
    so a long-lived process (the web page, the scheduler) gets its collector back unchanged.
    Nothing is ever left uncollected: the collector stays enabled throughout."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(before[0], WALK_GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
