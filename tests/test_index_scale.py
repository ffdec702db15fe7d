"""The chunk index stays compact when a repository holds many chunks (speed issue, item 3).

A scaled-down ``benchmarks.index_scale``: 300k synthetic entries in fake packs, written as real
index files through the library, then loaded back. ``python -m benchmarks.index_scale`` runs
the full-size version (10M entries, snapshot throughput and peak RSS).
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from benchmarks.index_scale import write_fake_index
from dedupe.repo.repository import Repository
from dedupe.storage.memory import MemoryStorage

ENTRIES = 300_000
PASSWORD = b"index scale"


@pytest.mark.timeout(60)
def test_index_of_300k_entries_loads_compactly(cheap_kdf: None) -> None:
    started = time.process_time()  # CPU time: the machine may be shared
    repo = Repository.init(MemoryStorage(), PASSWORD, 64 * 1024, "zstd:3")
    firsts = write_fake_index(repo, ENTRIES, files=3, per_pack=300)
    assert len(list(repo.storage.list("index/"))) == 3
    reopened = Repository.open(repo.storage, lambda: PASSWORD)
    reopened.cache_dir = None  # in memory: the index as every command had it before the cache

    tracemalloc.start()
    try:
        index = reopened.load_index()
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(index) == ENTRIES
    for blob_id in firsts:
        location = index.lookup(blob_id)
        assert location is not None and location.offset == 0 and location.length >= 20_000
    assert index.lookup(bytes(32)) is None
    per_entry = retained / ENTRIES
    print(
        f"\nload_index: {ENTRIES} entries, {per_entry:.0f} B/entry retained, "
        f"{peak / ENTRIES:.0f} B/entry peak during the load"
    )
    assert per_entry < 100, f"{per_entry:.0f} bytes of RAM per index entry"
    assert time.process_time() - started < 20


@pytest.mark.timeout(60)
def test_cached_index_of_300k_entries_keeps_little_in_ram(cheap_kdf: None, tmp_path) -> None:
    """The local cache (dedupe.repo.indexcache): built once, then mapped, not decoded."""
    repo = Repository.init(MemoryStorage(), PASSWORD, 64 * 1024, "zstd:3")
    firsts = write_fake_index(repo, ENTRIES, files=3, per_pack=300)
    seconds = {}
    for run in ("cold", "warm"):
        reopened = Repository.open(repo.storage, lambda: PASSWORD)
        reopened.cache_dir = str(tmp_path)
        tracemalloc.start()
        try:
            started = time.process_time()
            index = reopened.load_index()
            seconds[run] = time.process_time() - started
            retained, _peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert index.base is not None and len(index) == ENTRIES
        assert all(index.lookup(blob_id).offset == 0 for blob_id in firsts)
    print(f"\ncached load_index: cold {seconds['cold']:.2f} s, warm {seconds['warm']:.3f} s, "
          f"{retained / ENTRIES:.1f} B/entry in Python objects")  # fmt: skip
    assert retained / ENTRIES < 8, f"{retained / ENTRIES:.0f} bytes of RAM per cached entry"
    assert seconds["warm"] < seconds["cold"] / 5
