"""The chunk index: which pack holds each blob, where, and how big.

It is the union of every current index file (`dedupe.repo.indexfile`, which also says which files
count): in memory, or mostly in the memory-mapped local cache (`dedupe.repo.indexcache`) with the
newer files in memory.

The index file format lives in `dedupe.repo.indexfile`; its names are re-exported here for the
callers that import them from this module.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dedupe.repo.indexfile import (
    ROW_BYTES,
    Generation,
    IndexFile,
    PackColumns,
    Verdict,
    decode_index,
    encode_columns,
    encode_index,
    judge,
)
from dedupe.repo.pack import BlobEntry

__all__ = [
    "ROW_BYTES",
    "BaseDamaged",
    "ChunkIndex",
    "Generation",
    "IndexFile",
    "Location",
    "PackColumns",
    "Row",
    "SortedBase",
    "Verdict",
    "decode_index",
    "encode_columns",
    "encode_index",
    "judge",
    "sort_unique",
]


@dataclass(frozen=True, slots=True)
class Location:
    """A blob's place in the repository."""

    pack_id: bytes
    offset: int
    length: int
    raw_length: int


Row = tuple[int, int, int, int]  # pack number, offset, length, raw length


class BaseDamaged(Exception):
    """A base table's bytes failed verification while being read (see `SortedBase`)."""


class SortedBase(Protocol):
    """A read-only table of entries beneath a ChunkIndex's own (the local cache,
    `dedupe.repo.indexcache`). It verifies what it reads and raises BaseDamaged when that fails;
    its pack numbers index `pack_ids`, which the ChunkIndex extends for its own entries."""

    pack_ids: list[bytes]

    def __len__(self) -> int: ...

    def find(self, blob_id: bytes, verify_absent: bool = True) -> Row | None:
        """The entry of `blob_id`, verified. Without `verify_absent`, an answer of None may
        come from unverified bytes: enough where a false "absent" only costs storing again."""
        ...

    def known(self, keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """A boolean mask: which of these (sorted or not) ids the table holds."""
        ...

    def verify_all(self) -> None: ...

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, fields) of every entry in order, in chunks; call `verify_all` first."""
        ...


def sort_unique(ids: np.ndarray, fields: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by key (the first 8 id bytes as a little-endian integer), keeping the first
    row of each id: (keys, ids, fields). Pure; the merge of the index and of its cache file."""
    keys = ids[:, :8].copy().view("<u8").reshape(-1)
    # Sort by prefix, keeping the first occurrence of each id (a stable sort).
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    ids = ids[order]
    fields = fields[order]
    del order
    if len(keys) > 1:
        same_key = keys[1:] == keys[:-1]
        if same_key.any():
            dup = np.zeros(len(keys), dtype=bool)
            for i in np.nonzero(same_key)[0] + 1:
                # equal prefixes are rare: compare full ids against earlier equal keys
                j = i - 1
                while j >= 0 and keys[j] == keys[i]:
                    if not dup[j] and (ids[j] == ids[i]).all():
                        dup[i] = True
                        break
                    j -= 1
            keep = ~dup
            keys, ids, fields = keys[keep], ids[keep], fields[keep]
    return keys, ids, fields


class ChunkIndex:
    """blob id -> location, for every blob the repository's index files name.

    Compact by design (a few TB in small chunks is tens of millions of entries): the bulk lives in
    sorted numpy arrays, 56 bytes per blob (8-byte id prefix for the search, the full 32-byte
    id, and four 32-bit fields: pack number, offset, length, raw length). Blobs added since the
    last merge sit in a small dict; `merge` folds them in. Pack ids are stored once each.

    With a `base` (the memory-mapped local cache), those arrays hold only what the base lacks
    (index files newer than the cache, packs written by this process), and lookups check both.
    An id is in at most one of them. If the base fails verification, `recover` (a load from the
    repository's own index files) replaces it, so a damaged cache costs time, never an entry.
    """

    MERGE_AT = 1 << 20

    def __init__(
        self,
        base: SortedBase | None = None,
        recover: Callable[[], ChunkIndex] | None = None,
    ) -> None:
        if base is not None and recover is None:
            raise ValueError("an index over a base needs a way to recover from its damage")
        self._recover = recover
        self._fallback_lock = threading.Lock()
        self._base = base
        self._pack_ids: list[bytes] = list(base.pack_ids) if base is not None else []
        self._pack_numbers = {pack_id: n for n, pack_id in enumerate(self._pack_ids)}
        self._keys = np.empty(0, dtype=np.uint64)
        self._ids = np.empty((0, 32), dtype=np.uint8)
        self._fields = np.empty((0, 4), dtype=np.uint32)
        self._recent: dict[bytes, Row] = {}
        self._bulk: list[tuple[np.ndarray, np.ndarray]] = []
        self._views()

    @property
    def base(self) -> SortedBase | None:
        return self._base

    def _pack_number(self, pack_id: bytes) -> int:
        number = self._pack_numbers.get(pack_id)
        if number is None:
            number = self._pack_numbers[pack_id] = len(self._pack_ids)
            self._pack_ids.append(pack_id)
        return number

    def add_pack(self, pack_id: bytes, entries: Iterable[BlobEntry]) -> None:
        entries = list(entries)
        try:
            self._add_pack(pack_id, entries)
        except BaseDamaged:
            self._fall_back()
            self._add_pack(pack_id, entries)

    def _add_pack(self, pack_id: bytes, entries: list[BlobEntry]) -> None:
        number = self._pack_number(pack_id)
        recent = self._recent
        base = self._base
        for e in entries:
            if (
                e.blob_id not in recent
                and self._find(e.blob_id) < 0
                and (base is None or base.find(e.blob_id, False) is None)
            ):
                recent[e.blob_id] = (number, e.offset, e.length, e.raw_length)
        if len(recent) >= self.MERGE_AT:
            self.merge()

    def add_bulk(self, pack_id: bytes, ids: bytes, fields: np.ndarray) -> None:
        """Add many entries at once: `ids` is n*32 bytes, `fields` an (n, 3) array of offset,
        length, raw length. Duplicates of known blobs are dropped at the next merge."""
        number = self._pack_number(pack_id)
        n = len(ids) // 32
        block = np.empty((n, 4), dtype=np.uint32)
        block[:, 0] = number
        block[:, 1:] = fields
        self._bulk.append((np.frombuffer(ids, dtype=np.uint8).reshape(n, 32), block))

    def merge(self) -> None:
        """Fold recent and bulk entries into the sorted arrays (first entry of an id wins)."""
        try:
            self._merge()
        except BaseDamaged:
            self._fall_back()

    def _merge(self) -> None:
        parts_ids = [self._ids]
        parts_fields = [self._fields]
        if self._recent:
            n = len(self._recent)
            parts_ids.append(
                np.frombuffer(b"".join(self._recent.keys()), dtype=np.uint8).reshape(n, 32)
            )
            parts_fields.append(np.array(list(self._recent.values()), dtype=np.uint32))
        for ids, fields in self._bulk:
            parts_ids.append(ids)
            parts_fields.append(fields)
        if len(parts_ids) == 1:
            return
        # Memory matters at tens of millions of entries: every source is released as soon as
        # it has been copied, and the arrays are reordered one at a time.
        self._recent = {}
        self._bulk = []
        self._ids = self._fields = None  # type: ignore[assignment]
        ids = np.concatenate(parts_ids)
        del parts_ids
        fields = np.concatenate(parts_fields)
        del parts_fields
        self._keys, self._ids, self._fields = sort_unique(ids, fields)
        self._views()
        if self._base is not None and len(self._keys):
            # Entries the base has already (an index file written after the cache naming a
            # blob the cache knows) stay the base's: an id lives in one place only.
            known = self._base.known(self._keys, self._ids)
            if known.any():
                keep = ~known
                self._keys, self._ids = self._keys[keep], self._ids[keep]
                self._fields = self._fields[keep]
                self._views()

    def _fall_back(self) -> None:
        """Replace a base that failed verification by the repository's own index files, keeping
        this index's entries (they are in those files too, unless a writer just added them)."""
        with self._fallback_lock:
            if self._base is None:
                return  # another thread did it
            assert self._recover is not None
            fresh = self._recover()
            ids, fields = self._own_rows()
            if len(ids):
                numbers = np.array([fresh._pack_number(p) for p in self._pack_ids], np.uint32)
                fields[:, 0] = numbers[fields[:, 0]]
                fresh._bulk.append((ids, fields))
            fresh.merge()
            # One dict update: a thread looking up meanwhile sees the old state or the new one.
            state = {k: v for k, v in fresh.__dict__.items() if k not in _OWN}
            self.__dict__.update(state)

    def _own_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every entry held outside the base, unmerged: (ids, fields)."""
        ids = [self._ids] + [b[0] for b in self._bulk]
        fields = [self._fields] + [b[1] for b in self._bulk]
        if self._recent:
            n = len(self._recent)
            ids.append(np.frombuffer(b"".join(self._recent), dtype=np.uint8).reshape(n, 32))
            fields.append(np.array(list(self._recent.values()), dtype=np.uint32))
        return np.concatenate(ids), np.concatenate(fields)

    def _views(self) -> None:
        # Plain memoryviews: bisect and slicing on them cost about a microsecond, where numpy
        # scalar calls cost several.
        # (`ndarray.data` is the array's buffer as a memoryview; an empty one cannot be cast.)
        keys = np.ascontiguousarray(self._keys)
        self._key_view = (keys.data if len(keys) else memoryview(b"")).cast("B").cast("Q")
        self._id_view = np.ascontiguousarray(self._ids).reshape(-1).data
        fields = np.ascontiguousarray(self._fields, dtype=np.uint32).reshape(-1)
        self._field_view = (fields.data if len(fields) else memoryview(b"")).cast("B").cast("I")

    def _find(self, blob_id: bytes) -> int:
        keys = self._key_view
        n = len(keys)
        if not n:
            return -1
        key = int.from_bytes(blob_id[:8], "little")
        i = bisect.bisect_left(keys, key)
        ids = self._id_view
        while i < n and keys[i] == key:
            if ids[i * 32 : i * 32 + 32] == blob_id:
                return i
            i += 1
        return -1

    def _row(self, blob_id: bytes, verify_absent: bool = True) -> Row | None:
        if self._bulk:
            self.merge()
        row = self._recent.get(blob_id)
        if row is not None:
            return row
        i = self._find(blob_id)
        if i >= 0:
            number, offset, length, raw_length = self._field_view[4 * i : 4 * i + 4]
            return number, offset, length, raw_length
        base = self._base
        if base is None:
            return None
        try:
            return base.find(blob_id, verify_absent)
        except BaseDamaged:
            self._fall_back()
            return self._row(blob_id)

    def __contains__(self, blob_id: bytes) -> bool:
        # Writers ask this before storing a blob: a false "absent" would only store it again,
        # so an absent answer from the base needs no verification; a present one always has.
        return self._row(blob_id, verify_absent=False) is not None

    def __len__(self) -> int:
        if self._bulk:
            self.merge()
        base = len(self._base) if self._base is not None else 0
        return base + len(self._keys) + len(self._recent)

    def lookup(self, blob_id: bytes) -> Location | None:
        row = self._row(blob_id)
        if row is None:
            return None
        number, offset, length, raw_length = row
        return Location(self._pack_ids[number], offset, length, raw_length)

    def items(self) -> Iterator[tuple[bytes, Location]]:
        self.merge()
        if self._base is not None:
            try:
                self._base.verify_all()  # before the first item: a fall-back cannot restart
            except BaseDamaged:
                self._fall_back()
        pack_ids = self._pack_ids
        chunks = self._base.chunks() if self._base is not None else iter(())
        for ids, fields in itertools.chain(chunks, [(self._ids, self._fields)]):
            id_bytes = np.ascontiguousarray(ids).tobytes()
            for i, (number, offset, length, raw_length) in enumerate(fields.tolist()):
                location = Location(pack_ids[number], offset, length, raw_length)
                yield id_bytes[32 * i : 32 * i + 32], location

    def own_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sorted (keys, ids, fields) held outside the base (merged first)."""
        self.merge()
        return self._keys, self._ids, self._fields

    def pack_ids(self) -> list[bytes]:
        return list(self._pack_ids)


# Attributes a fall-back keeps (the rest is replaced by the recovered index's state).
_OWN = frozenset({"_recover", "_fallback_lock"})
