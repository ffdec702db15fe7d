"""The repository's index files as one process saw them, and the chunk index loaded from them.

`IndexFiles` decides which index files count (superseded ones, left by an interrupted gc, and
ones below the floor, put back from an old copy, are skipped: `dedupe.repo.index.judge`), loads
their union through the local cache when one may be used (`dedupe.repo.indexcache`) or decoded
into memory otherwise, and remembers what it saw: the names, the damage, the index floor and
every file listed at load time. That memory is what lets a writer notice a gc that ran since
(`changed_since_load`) before it commits a manifest that would reference a deleted blob, and
what gives the index files this process writes their generation. Kept apart from `Repository`
so the rules about which files count live in one place, away from keys and blob reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

from dedupe.crypto import keys
from dedupe.crypto.seal import Sealer, content_hash
from dedupe.errors import DamageError, ObjectNotFound
from dedupe.repo import indexcache
from dedupe.repo.cachetable import CacheTable
from dedupe.repo.index import (
    BaseDamaged,
    ChunkIndex,
    Generation,
    IndexFile,
    decode_index,
    encode_index,
    judge,
)
from dedupe.repo.names import GC_PENDING, pack_id_from_name
from dedupe.repo.pack import BlobEntry
from dedupe.storage.base import Storage


class IndexFiles:
    """One repository's `index/` folder, as loaded by this process."""

    def __init__(
        self, storage: Storage, sealer: Sealer, key: keys.MasterKey, repo_id: bytes
    ) -> None:
        self.storage = storage
        self.sealer = sealer
        self.key = key
        self.repo_id = repo_id
        self.names: list[str] = []
        self.errors: list[str] = []
        # The index floor seen when the index was loaded (`dedupe.repo.index.judge`): the
        # generation this process writes its index files with. Every index file listed at load
        # time, current or not, is in `seen` (`current_floor` skips them).
        self.floor = 0
        self.seen: set[str] = set()

    def load(self, cache_dir: str | None) -> ChunkIndex:
        """The union of the current index files: the local cache in `cache_dir` plus the files
        newer than it when a cache may be used (`dedupe.repo.indexcache`), else every file
        decoded into memory."""
        self.errors = []
        sizes = {info.name.split("/")[-1]: info.size for info in self.storage.list("index/")}
        total = sum(sizes.values())
        if (
            not cache_dir
            or not indexcache.usable()
            or total < indexcache.MIN_INDEX_BYTES
            # While gc-pending exists, entries of deleted packs must be filtered out, and gc's
            # next step supersedes every index file a cache could cover anyway.
            or self.storage.exists(GC_PENDING)
        ):
            return self._load_uncached()
        key = indexcache.cache_key(self.key.enc_key, self.key.id_key, self.key.repo_id)
        folder = os.path.join(cache_dir, self.repo_id.hex())
        cache = indexcache.IndexCache(folder, key, self.repo_id)
        table = cache.open()
        index = self._index_over_cache(cache, table, sizes) if table is not None else None
        if index is not None:
            return index
        try:  # no usable cache: build one (~44 bytes of index file per entry)
            table, self.names = cache.build(self._decode_each(sizes), total // 44)
        except OSError:
            return self._load_uncached()  # an unwritable cache folder: do without
        self.floor, self.seen = table.floor, set(sizes)
        return ChunkIndex(table, self._recover)

    def _decode_each(self, names: Iterable[str]) -> Iterator[tuple[str, IndexFile]]:
        """Decode index files one at a time; damaged ones go to `errors`."""
        for name in names:
            try:
                yield name, decode_index(self.storage.get(f"index/{name}"), self.sealer, name)
            except ObjectNotFound:
                continue
            except DamageError as exc:
                # One damaged index file must not lock users out of everything else: its blobs
                # look absent (a snapshot stores them again; a restore needing them fails
                # loudly) and `check` reports it as damage.
                self.errors.append(str(exc))

    def _index_over_cache(
        self, cache: indexcache.IndexCache, table: CacheTable, sizes: dict[str, int]
    ) -> ChunkIndex | None:
        """The cache plus the index files newer than it, or None if the cache is stale: a file
        it covers is gone or superseded, or a newer file raised the floor (gc), so it may name
        packs that no longer exist. A new file below the cache's floor was put back from an old
        copy and is ignored."""
        if not table.covered <= sizes.keys():
            return None
        new = [n for n in sizes if n not in table.covered and n not in table.superseded]
        files = dict(self._decode_each(new))
        if any(f.floor > table.floor for f in files.values()):
            return None
        below = {n for n, f in files.items() if f.gen < table.floor}
        superseded = {s for n, f in files.items() if n not in below for s in f.supersedes}
        if superseded & table.covered:
            return None
        current = [n for n in files if n not in superseded and n not in below]
        index = ChunkIndex(table, self._recover)
        for name in current:
            for column in files[name].columns:
                if len(column.ids):
                    index.add_bulk(column.pack_id, column.ids, column.fields)
        files.clear()
        index.merge()
        self.names = sorted(table.covered) + current
        self.floor, self.seen = table.floor, set(sizes)
        if index.base is table and (
            len(current) >= indexcache.REWRITE_FILES
            or len(index.own_entries()[0]) >= indexcache.REWRITE_ROWS
        ):
            try:
                table = cache.rewrite(
                    table,
                    index.own_entries(),
                    index.pack_ids(),
                    self.names,
                    table.superseded | superseded | below,
                )
            except BaseDamaged:
                return None
            except OSError:
                return index
            return ChunkIndex(table, self._recover)
        return index

    def _recover(self) -> ChunkIndex:
        """The index files in memory, replacing a cache that failed verification mid-command.
        What this process loaded first stays its view (`floor`, the files seen): a gc since
        then must still show in `changed_since_load`."""
        floor, seen = self.floor, self.seen
        try:
            return self._load_uncached()
        finally:
            self.floor, self.seen = floor, seen

    def _load_uncached(self) -> ChunkIndex:
        """Read every index file into memory (no local cache)."""
        self.errors = []
        names = [info.name.split("/")[-1] for info in self.storage.list("index/")]
        files = dict(self._decode_each(names))
        verdict = judge({name: f.generation for name, f in files.items()})
        present: set[bytes | None] | None = None
        if self.storage.exists(GC_PENDING):
            # An interrupted gc deleted garbage packs that these files still name. Their blobs
            # are referenced by no snapshot, but a writer trusting the entries would dedupe
            # against chunks that are gone (borg#9748), so packs that are absent are dropped.
            present = {pack_id_from_name(i.name) for i in self.storage.list("data/")}
        index = ChunkIndex()
        self.names = list(verdict.current)
        self.floor, self.seen = verdict.floor, set(names)
        for name in verdict.current:
            for column in files[name].columns:
                if len(column.ids) and (present is None or column.pack_id in present):
                    index.add_bulk(column.pack_id, column.ids, column.fields)
        files.clear()  # the bulk entries are views of these; merging copies and frees them
        index.merge()
        return index

    def write(
        self, packs: list[tuple[bytes, list[BlobEntry]]], supersedes: Sequence[str] = ()
    ) -> tuple[str, int]:
        """Write one index file naming `packs` at the floor seen at load time (the caller has
        loaded the index): (name, size)."""
        floor = self.floor
        data = encode_index(packs, list(supersedes), self.sealer, gen=floor, floor=floor)
        name = content_hash(data).hex()
        self.storage.put(f"index/{name}", data)
        self.names.append(name)
        self.seen.add(name)
        return name, len(data)

    def _new_files(self) -> list[Generation]:
        """The generations of index files listed now that were not listed at load time (nor
        written by this process); damaged or vanished ones are skipped."""
        found = []
        for info in self.storage.list("index/"):
            name = info.name.split("/")[-1]
            if name in self.seen:
                continue
            try:
                found.append(
                    decode_index(self.storage.get(info.name), self.sealer, name).generation
                )
            except (ObjectNotFound, DamageError):
                continue
        return found

    def current_floor(self) -> int:
        """The index floor now (the caller has loaded the index): at least `floor`, higher
        once a gc (or `repair index`) has replaced the whole index since. Only files not listed
        at load time are decoded."""
        return max([self.floor, *(g.floor for g in self._new_files())])

    def changed_since_load(self) -> bool:
        """True if a gc or repair wrote an index file since the index was loaded (see
        `Repository.index_changed_since_load`)."""
        return any(max(g.gen, g.floor) > self.floor for g in self._new_files())
