"""The walk's collector settings (dedupe.backup.memory.fewer_collections): in force only inside,
undone on exit (also after an error), and reference cycles made inside are still collected."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

from dedupe.backup.memory import WALK_GC_THRESHOLD, fewer_collections


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


def test_settings_apply_inside_and_are_undone() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with fewer_collections():
        assert gc.get_threshold()[0] >= WALK_GC_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > frozen_before
        assert gc.isenabled()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


def test_undone_after_an_error() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("walk failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


def test_a_cycle_made_inside_is_collected() -> None:
    with fewer_collections():
        ref = weakref.ref(_Cyclic())
        assert ref() is not None  # only the cycle holds it
        gc.collect()
        assert ref() is None


_PACKB_FAULTS = """
import resource, sys
import msgpack
from dedupe.backup.memory import bound_freed_memory
if not bound_freed_memory():
    print("skip")
    sys.exit(0)
item = [(b"visit-2023-05-31-358.txt", 33188, 1234567, 2048, 17 * 10**17, 0, 0, None)]
for _ in range(100):
    msgpack.packb(item)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2000):
    msgpack.packb(item)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_packb_buffers_are_reused_not_mapped_per_call() -> None:
    """msgpack's 256 KiB buffer per packb stays below the mmap threshold and the heap keeps it:
    with the threshold at 256 KiB every call mapped fresh pages (thousands of page faults here,
    20 us a call instead of 1)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PACKB_FAULTS], capture_output=True, text=True, check=True
    )
    if proc.stdout.strip() == "skip":
        pytest.skip("no glibc mallopt here")
    assert int(proc.stdout) < 200
