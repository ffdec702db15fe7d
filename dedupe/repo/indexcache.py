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
"""

from __future__ import annotations

import bisect
import contextlib
import hmac
import mmap
import os
import secrets
import struct
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO

import blake3
import numpy as np

from dedupe import codec
from dedupe.errors import FormatError
from dedupe.repo.index import (
    ROW_BYTES,
    BaseDamaged,
    Generation,
    IndexFile,
    Row,
    judge,
    sort_unique,
)

CACHE_NAME = "index"
MAGIC = b"DDXCACHE"
VERSION = 2  # 2: the names section records the index floor (a version-1 cache is rebuilt)
BLOCK = 128  # entries per authenticated block
TAG_BYTES = 16
ALIGN = 64
# magic, version, block, repo id, entries, packs, names length, 7 section offsets, file size
_HEADER = struct.Struct("<8sII16s11Q")
HEADER_BYTES = 192  # the fields above, their 32-byte MAC, padding
# Below this much index data, decoding the files is about as fast as the cache (and tiny test
# repositories leave no cache files behind).
MIN_INDEX_BYTES = 4 << 20
# Rewrite the cache once the delta holds this many entries or comes from this many files.
REWRITE_ROWS = 200_000
REWRITE_FILES = 32
_BUCKET_ROWS = 1 << 19  # rows per bucket of a cold build (each is sorted in memory)
_CHUNK_ROWS = BLOCK * 4096  # rows per step of a rewrite
_WIDTHS = (8, 32, 16)  # bytes per entry of the keys, ids and fields columns
_ERRORS = (OSError, ValueError, struct.error, FormatError, OverflowError)


def usable() -> bool:
    """The file stores native little-endian integers, and mmap needs a platform with it."""
    return sys.byteorder == "little" and hasattr(mmap, "mmap")


def cache_key(enc_key: bytes, id_key: bytes, repo_id: bytes) -> bytes:
    """The MAC key: derived (BLAKE3 derive_key), so it is no blob id and reveals no key."""
    return blake3.blake3(
        enc_key + id_key + repo_id, derive_key_context="dedupe 2026 local index cache v1 mac"
    ).digest()


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _blocks(n: int) -> int:
    return -(-n // BLOCK)


def _section_sizes(entries: int, packs: int, names_len: int) -> list[int]:
    """Names, pack ids, fence, tags, keys, ids, fields: the sections, in file order."""
    blocks = _blocks(entries)
    return [
        names_len,
        32 * packs,
        8 * blocks,
        TAG_BYTES * blocks,
        *(w * entries for w in (8, 32, 16)),
    ]


# (dtype, shape) of the mapped keys, ids and fields columns.
_COLUMN_LAYOUT: list[tuple[np.dtype[Any], tuple[int, ...]]] = [
    (np.dtype("<u8"), (-1,)),
    (np.dtype(np.uint8), (-1, 32)),
    (np.dtype("<u4"), (-1, 4)),
]


def _block_tag(
    key: bytes, number: int, columns: Sequence[bytes | memoryview], start: int, end: int
) -> bytes:
    """The tag of rows [start, end) of the (keys, ids, fields) byte columns, as block `number`."""
    tag = blake3.blake3(number.to_bytes(8, "little"), key=key)
    for column, width in zip(columns, _WIDTHS, strict=True):
        tag.update(column[width * start : width * end])
    return tag.digest(TAG_BYTES)


def _encode_names(covered: Iterable[str], superseded: Iterable[str], floor: int) -> bytes:
    names = {"covered": sorted(covered), "superseded": sorted(superseded), "floor": floor}
    return codec.pack({"v": VERSION} | names)


def _decode_names(data: bytes) -> tuple[frozenset[str], frozenset[str], int]:
    obj = codec.unpack(data, "index cache names")
    lists = [codec.field(obj, k, list, "index cache") for k in ("covered", "superseded")]
    for names in lists:
        if not all(isinstance(n, str) and len(n) == 64 for n in names):
            raise FormatError("index cache: malformed names")
    floor = codec.field(obj, "floor", int, "index cache")
    return frozenset(lists[0]), frozenset(lists[1]), floor


# --- reading -------------------------------------------------------------------------------------


class CacheTable:
    """An opened cache file whose header MAC checked out: a `SortedBase` for `ChunkIndex`.
    Raises on anything wrong with the header. Blocks are verified on first read; one that
    fails deletes the file and raises BaseDamaged."""

    def __init__(self, path: str, file: BinaryIO, key: bytes, repo_id: bytes) -> None:
        fd = file.fileno()
        st = os.fstat(fd)
        head = _pread_exact(fd, HEADER_BYTES, 0)
        magic, version, block, owner, n, packs, names_len, *offsets, size = _HEADER.unpack(
            head[: _HEADER.size]
        )
        if (magic, version, block, owner, size) != (MAGIC, VERSION, BLOCK, repo_id, st.st_size):
            raise ValueError("index cache: not ours, or truncated")
        sizes, at = _section_sizes(n, packs, names_len), HEADER_BYTES
        for offset, length in zip(offsets, sizes, strict=True):
            if offset < at or offset % ALIGN:
                raise ValueError("index cache: bad layout")
            at = offset + length
        if at > size:
            raise ValueError("index cache: sections beyond the end")
        sections = [_pread_exact(fd, k, at) for at, k in zip(offsets[:4], sizes[:4], strict=True)]
        mac = blake3.blake3(head[: _HEADER.size], key=key)
        for section in sections:
            mac.update(section)
        if not hmac.compare_digest(mac.digest(), head[_HEADER.size : _HEADER.size + 32]):
            raise ValueError("index cache: header authentication failed")
        names, pack_table, fence, self._tags = sections
        # `superseded`: listed files known to count for nothing (superseded or below the floor).
        self.covered, self.superseded, self.floor = _decode_names(names)
        self.pack_ids = [pack_table[32 * i : 32 * i + 32] for i in range(packs)]
        self.path, self._file, self._ino, self._key = path, file, st.st_ino, key
        self._n: int = n
        self._fence = memoryview(fence).cast("Q")
        self._mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        with contextlib.suppress(AttributeError, OSError):
            self._mm.madvise(mmap.MADV_RANDOM)  # lookups touch a few pages each: no read-ahead
        view = memoryview(self._mm)
        self._at = offsets[4:7]
        self._raw = [view[at : at + w * n] for at, w in zip(self._at, _WIDTHS, strict=True)]
        self._keys = self._raw[0].cast("Q")
        self._fields = self._raw[2].cast("I")
        self._verified = bytearray(_blocks(n))

    def __len__(self) -> int:
        return self._n

    def _verify(self, block: int) -> None:
        start, end = block * BLOCK, min(self._n, (block + 1) * BLOCK)
        self._expect(block, _block_tag(self._key, block, self._raw, start, end))
        self._verified[block] = 1

    def _expect(self, block: int, tag: bytes) -> None:
        if not hmac.compare_digest(tag, self._tags[TAG_BYTES * block : TAG_BYTES * (block + 1)]):
            self.damaged()

    def damaged(self) -> None:
        """Delete the file (if it is still the one mapped) and raise BaseDamaged."""
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        raise BaseDamaged(f"the local index cache {self.path} is damaged")

    def find(self, blob_id: bytes, verify_absent: bool = True) -> Row | None:
        n = self._n
        if not n:
            return None
        key = int.from_bytes(blob_id[:8], "little")
        # The fence (first key of each block) is authenticated with the header: the entries
        # with this key start in the last block whose first key is smaller, or the next one.
        block = max(0, bisect.bisect_left(self._fence, key) - 1)
        verified = self._verified
        if verify_absent and not verified[block]:
            self._verify(block)
        keys, ids = self._keys, self._raw[1]
        end = min(n, (block + 1) * BLOCK)
        i = bisect.bisect_left(keys, key, block * BLOCK, end)
        while True:
            if i == end:
                if end == n:
                    return None
                block += 1
                if verify_absent and not verified[block]:
                    self._verify(block)
                end = min(n, end + BLOCK)
            if keys[i] != key:
                return None
            if ids[32 * i : 32 * i + 32] == blob_id:
                if not verified[block]:
                    self._verify(block)  # a claim of presence is never unverified
                number, offset, length, raw_length = self._fields[4 * i : 4 * i + 4]
                return number, offset, length, raw_length
            i += 1

    def known(self, keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(keys), dtype=bool)
        if not self._n or not len(keys):
            return mask
        table_keys = self._column(0)
        at = np.minimum(np.searchsorted(table_keys, keys), self._n - 1)
        for i in np.nonzero(table_keys[at] == keys)[0]:  # candidates: the prefix is there
            mask[i] = self.find(ids[i].tobytes(), verify_absent=False) is not None
        return mask

    def _column(self, i: int) -> np.ndarray:
        # From the mapping itself, not from a memoryview of it: an array exporting a
        # memoryview's buffer must not outlive it in a reference cycle.
        dtype, shape = _COLUMN_LAYOUT[i]
        count = self._n * _WIDTHS[i] // dtype.itemsize
        column: np.ndarray = np.frombuffer(self._mm, dtype, count, self._at[i]).reshape(shape)
        return column

    def verify_all(self) -> None:
        for block in range(len(self._verified)):
            if not self._verified[block]:
                self._verify(block)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids, fields = self._column(1), self._column(2)
        for start in range(0, self._n, _CHUNK_ROWS):
            yield ids[start : start + _CHUNK_ROWS], fields[start : start + _CHUNK_ROWS]

    def read_verified(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of rows [start, end) (start at a block boundary), read with pread rather
        than through the mapping (a rewrite then does not count the whole file as resident),
        and checked against their tags; BaseDamaged if one fails."""
        parts = []
        for at, width in zip(self._at, _WIDTHS, strict=True):
            data = os.pread(self._file.fileno(), width * (end - start), at + width * start)
            if len(data) != width * (end - start):
                self.damaged()
            parts.append(data)
        keys = np.frombuffer(parts[0], dtype="<u8")
        ids = np.frombuffer(parts[1], dtype=np.uint8).reshape(-1, 32)
        fields = np.frombuffer(parts[2], dtype="<u4").reshape(-1, 4)
        for s in range(0, end - start, BLOCK):
            block = (start + s) // BLOCK
            self._expect(block, _block_tag(self._key, block, parts, s, min(end - start, s + BLOCK)))
        return keys, ids, fields

    def first_key(self, index: int) -> int:
        """The key of entry `index` (a block boundary), from the authenticated fence."""
        return self._fence[index // BLOCK]


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise ValueError("index cache: short read")
    return data


# --- writing -------------------------------------------------------------------------------------


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
        spill = _Spill(self.folder, estimated_rows)
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
            with _Writer(
                self, spill.rows, list(pack_numbers), covered, ignored, verdict.floor
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
        with _Writer(self, capacity, pack_ids, covered, superseded, table.floor) as writer:
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


def _pwrite_all(fd: int, data: bytes | np.ndarray, offset: int) -> None:
    view = np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else memoryview(data)
    view = view.cast("B")
    while len(view):
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class _Writer:
    """Writes one cache file: up to `capacity` rows arrive in key order, in chunks. Leaving the
    `with` block normally authenticates it and renames it into place; an error removes it."""

    def __init__(
        self,
        cache: IndexCache,
        capacity: int,
        pack_ids: list[bytes],
        covered: Iterable[str],
        superseded: Iterable[str],
        floor: int,
    ) -> None:
        os.makedirs(cache.folder, mode=0o700, exist_ok=True)
        for name in os.listdir(cache.folder):  # left by a killed writer (a live one writes)
            stale = os.path.join(cache.folder, name)
            with contextlib.suppress(OSError):
                if name.endswith(".tmp") and time.time() - os.lstat(stale).st_mtime > 3600:
                    os.unlink(stale)
        self._cache = cache
        self._tmp = os.path.join(cache.folder, f".{CACHE_NAME}.{secrets.token_hex(8)}.tmp")
        self._names = _encode_names(covered, superseded, floor)
        self._pack_table = b"".join(pack_ids)
        self._packs, self._capacity = len(pack_ids), capacity
        self._offsets, at = [], HEADER_BYTES
        for length in _section_sizes(capacity, self._packs, len(self._names)):
            self._offsets.append(at)
            at = _align(at + length)
        self._size = at  # the file is extended by writing its sections
        self._n = 0
        self._fence: list[int] = []
        self._tags: list[bytes] = []
        self._tail: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # O_EXCL on a random name: never follows a planted link; 0600 from the start.
        self._fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        if kind is not None:
            self._discard()
            return
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise

    def append(self, keys: np.ndarray, ids: np.ndarray, fields: np.ndarray) -> None:
        if not len(keys):
            return
        if self._n + len(keys) > self._capacity:
            raise ValueError("index cache: more rows than planned")
        columns = [
            np.ascontiguousarray(keys, dtype="<u8"),
            np.ascontiguousarray(ids, dtype=np.uint8),
            np.ascontiguousarray(fields, dtype="<u4"),
        ]
        for column, width, at in zip(columns, _WIDTHS, self._offsets[4:7], strict=True):
            _pwrite_all(self._fd, column, at + width * self._n)
        self._n += len(keys)
        if self._tail is not None:  # the partial block left by the previous call
            columns = [np.concatenate([t, c]) for t, c in zip(self._tail, columns, strict=True)]
            self._tail = None
        full = len(columns[0]) // BLOCK * BLOCK
        views = [c.data.cast("B") for c in columns]
        for s in range(0, full, BLOCK):
            self._tag(views, s, s + BLOCK)
        if full < len(columns[0]):
            self._tail = (columns[0][full:], columns[1][full:], columns[2][full:])

    def _tag(self, columns: list[memoryview], start: int, end: int) -> None:
        self._fence.append(int.from_bytes(columns[0][8 * start : 8 * start + 8], "little"))
        self._tags.append(_block_tag(self._cache.key, len(self._tags), columns, start, end))

    def _finish(self) -> None:
        if self._tail is not None:
            views = [np.ascontiguousarray(c).data.cast("B") for c in self._tail]
            self._tag(views, 0, len(self._tail[0]))
        fence = np.array(self._fence, dtype="<u8").tobytes()
        sections = [self._names, self._pack_table, fence, b"".join(self._tags)]
        for data, at in zip(sections, self._offsets[:4], strict=False):
            _pwrite_all(self._fd, data, at)
        head = _HEADER.pack(
            MAGIC, VERSION, BLOCK, self._cache.repo_id, self._n, self._packs, len(self._names),
            *self._offsets, self._size,
        )  # fmt: skip
        mac = blake3.blake3(head, key=self._cache.key)
        for data in sections:
            mac.update(data)
        _pwrite_all(self._fd, head + mac.digest(), 0)
        os.ftruncate(self._fd, self._size)
        os.close(self._fd)
        self._fd = -1
        # No fsync: a file torn by a crash fails its MACs and is rebuilt.
        os.replace(self._tmp, self._cache.path)

    def _discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


# --- building ------------------------------------------------------------------------------------


class _Spill:
    """Rows bucketed by the top bits of their key into unlinked temporary files, so that a cold
    build sorts one bucket at a time: memory stays at one index file plus one bucket."""

    def __init__(self, folder: str, estimated_rows: int) -> None:
        self.bits = 0
        while (estimated_rows >> self.bits) > _BUCKET_ROWS and self.bits < 10:
            self.bits += 1
        self.rows = 0
        self._files = [tempfile.TemporaryFile(dir=folder) for _ in range(1 << self.bits)]

    def add(self, rows: np.ndarray) -> None:
        self.rows += len(rows)
        if not len(rows):
            return
        if not self.bits:
            self._files[0].write(rows.data.cast("B"))
            return
        keys = rows[:, :8].copy().view("<u8").reshape(-1)
        bucket = keys >> np.uint64(64 - self.bits)
        rows = rows[np.argsort(bucket, kind="stable")]  # stable: the first entry of an id wins
        start = 0
        ends = np.cumsum(np.bincount(bucket, minlength=len(self._files))).tolist()
        for f, end in zip(self._files, ends, strict=True):
            if end > start:
                f.write(rows[start:end].data.cast("B"))
            start = end

    def buckets(self) -> Iterator[np.ndarray]:
        for f in self._files:
            f.seek(0)
            data = f.read()
            f.close()
            yield np.frombuffer(data, dtype=np.uint8).reshape(-1, ROW_BYTES)

    def close(self) -> None:
        for f in self._files:
            f.close()
