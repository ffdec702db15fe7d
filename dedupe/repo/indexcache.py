"""The local index cache: the repository's merged chunk index in one memory-mapped file.

Decoding every index file costs seconds and about a GiB of RAM at ten million entries. The cache,
`$DEDUPE_CACHE_DIR/<repo id hex>/index`, holds the result as sorted columns read in place, so a
command pays for the pages it touches; index files newer than the cache become a small in-memory
delta (a `ChunkIndex` over a `CacheTable`). Format and guarantees: docs/FORMAT.md, "Local cache".
In short: it is used only while every index file it covers exists and none is superseded, and no
listed file raises the index floor above the cache's (`dedupe.repo.index.judge`), never
while `gc-pending` exists (gc supersedes before it deletes: borg#9748); a key derived from the
master key authenticates the header (checked on open) and each block of 128 entries (checked on
first read), so a damaged, truncated or forged file costs time, never a chunk; it is written to a
temporary 0600 file and renamed. Deleting it changes only speed.

This module decides when a cache file is opened, built or rewritten; the file's layout is
`dedupe.repo.cacheformat`, reading it `dedupe.repo.cachetable` and writing it
`dedupe.repo.cachewriter` (`CacheTable`, `cache_key`, `BLOCK` and `HEADER_BYTES` are re-exported
here for the callers that import them from this module).
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from collections.abc import Iterable

import numpy as np

from dedupe.errors import FormatError
from dedupe.repo.cacheformat import BLOCK as BLOCK
from dedupe.repo.cacheformat import HEADER_BYTES as HEADER_BYTES
from dedupe.repo.cacheformat import cache_key as cache_key
from dedupe.repo.cachetable import CacheTable as CacheTable
from dedupe.repo.cachewriter import CacheWriter, Spill
from dedupe.repo.index import Generation, IndexFile, judge, sort_unique

CACHE_NAME = "index"
# Below this much index data, decoding the files is about as fast as the cache (and tiny test
# repositories leave no cache files behind).
MIN_INDEX_BYTES = 4 << 20
# Rewrite the cache once the delta holds this many entries or comes from this many files.
REWRITE_ROWS = 200_000
REWRITE_FILES = 32
_CHUNK_ROWS = BLOCK * 4096  # rows per step of a rewrite
_ERRORS = (OSError, ValueError, struct.error, FormatError, OverflowError)


def usable() -> bool:
    """The file stores native little-endian integers, and mmap needs a platform with it."""
    return sys.byteorder == "little" and hasattr(mmap, "mmap")


class IndexCache:
    """One repository's cache file: where it lives and the key that authenticates it."""

    def __init__(self, folder: str, key: bytes, repo_id: bytes) -> None:
        self.folder = folder
        self.path = os.path.join(folder, CACHE_NAME)
        self.key = key
        self.repo_id = repo_id

    def open(self) -> CacheTable | None:
        """The cache file, header-verified and mapped, or None if absent, damaged or foreign."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        file = open(fd, "rb")  # noqa: SIM115 (the table keeps it)
        try:
            return CacheTable(self.path, file, self.key, self.repo_id)
        except _ERRORS:
            file.close()
            return None

    def _reopen(self) -> CacheTable:
        table = self.open()
        if table is None:
            raise OSError(f"the index cache just written to {self.path} cannot be read back")
        return table

    def build(
        self, files: Iterable[tuple[str, IndexFile]], estimated_rows: int
    ) -> tuple[CacheTable, list[str]]:
        """Write the cache from the repository's index files (decoded one at a time, in listing
        order; the first entry of an id wins, as in memory) and open it. Returns the table and
        the names of the current (not superseded) files. OSError if it cannot be written."""
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        spill = Spill(self.folder, estimated_rows)
        try:
            names: list[str] = []
            generations: dict[str, Generation] = {}
            slot_packs: list[bytes] = []
            slot_files: list[int] = []
            for name, index_file in files:
                generations[name] = index_file.generation
                spill.add(index_file.rows(len(slot_packs)))
                slot_packs.extend(c.pack_id for c in index_file.columns)
                slot_files.extend([len(names)] * len(index_file.columns))
                names.append(name)
            # Only now is it known which files count: the others' slots are dropped.
            verdict = judge(generations)
            covered = verdict.current
            ignored = verdict.superseded | verdict.put_back
            pack_numbers: dict[bytes, int] = {}
            slot_pack = np.zeros(len(slot_packs), dtype="<u4")
            slot_live = np.zeros(len(slot_packs), dtype=bool)
            for slot, (pack_id, file_no) in enumerate(zip(slot_packs, slot_files, strict=True)):
                if names[file_no] not in ignored:
                    slot_live[slot] = True
                    slot_pack[slot] = pack_numbers.setdefault(pack_id, len(pack_numbers))
            with CacheWriter(
                self.path,
                self.key,
                self.repo_id,
                spill.rows,
                list(pack_numbers),
                covered,
                ignored,
                verdict.floor,
            ) as writer:
                for rows in spill.buckets():
                    fields = rows[:, 32:].copy().view("<u4")
                    live = slot_live[fields[:, 0]]
                    ids, fields = rows[live, :32], fields[live]
                    fields[:, 0] = slot_pack[fields[:, 0]]
                    writer.append(*sort_unique(ids, fields))
                    del rows, ids, fields
        finally:
            spill.close()
        return self._reopen(), covered

    def rewrite(
        self,
        table: CacheTable,
        delta: tuple[np.ndarray, np.ndarray, np.ndarray],
        pack_ids: list[bytes],
        covered: Iterable[str],
        superseded: Iterable[str],
    ) -> CacheTable:
        """A new cache: `table`'s entries (verified as they are copied) merged with `delta`,
        the sorted entries the table lacks (their pack numbers index `pack_ids`, which extends
        the table's), at the table's floor. BaseDamaged if the old file fails verification,
        OSError if writing does."""
        delta_keys, delta_ids, delta_fields = delta
        n = len(table)
        capacity = n + len(delta_keys)
        with CacheWriter(
            self.path, self.key, self.repo_id, capacity, pack_ids, covered, superseded, table.floor
        ) as writer:
            lo = 0
            for start in range(0, n, _CHUNK_ROWS):
                end = min(n, start + _CHUNK_ROWS)
                keys, ids, fields = table.read_verified(start, end)
                hi = len(delta_keys)
                if end < n:
                    hi = int(np.searchsorted(delta_keys, table.first_key(end)))
                if hi > lo:  # the table's rows first: on equal ids they win
                    ids = np.concatenate([ids, delta_ids[lo:hi]])
                    fields = np.concatenate([fields, delta_fields[lo:hi]])
                    keys, ids, fields = sort_unique(ids, fields)
                writer.append(keys, ids, fields)
                lo = hi
            if not n:
                writer.append(delta_keys, delta_ids, delta_fields)
        return self._reopen()
