"""Reading the local index cache: a `CacheTable` maps one cache file and answers lookups in place.

Opening checks the header's MAC (with the names, pack ids, fence and tags it covers) before
anything is believed; each block of 128 entries is checked against its tag the first time a
lookup needs it, so a command pays for the pages it touches and a damaged, truncated or forged
file costs time, never a chunk: a block that fails deletes the file (if it is still the one
mapped) and raises `BaseDamaged`, on which the repository falls back to the index files
(`dedupe.repo.indexload`). The layout is `dedupe.repo.cacheformat`.
"""

from __future__ import annotations

import bisect
import contextlib
import hmac
import mmap
import os
from collections.abc import Iterator
from typing import BinaryIO

import blake3
import numpy as np

from dedupe.repo.cacheformat import (
    BLOCK,
    COLUMN_LAYOUT,
    HEADER,
    HEADER_BYTES,
    TAG_BYTES,
    WIDTHS,
    block_tag,
    blocks,
    decode_names,
    section_sizes,
    unpack_header,
)
from dedupe.repo.index import BaseDamaged, Row

_STEP_ROWS = BLOCK * 4096  # rows per step of `chunks`


class CacheTable:
    """An opened cache file whose header MAC checked out: a `SortedBase` for `ChunkIndex`.
    Raises on anything wrong with the header. Blocks are verified on first read; one that
    fails deletes the file and raises BaseDamaged."""

    def __init__(self, path: str, file: BinaryIO, key: bytes, repo_id: bytes) -> None:
        fd = file.fileno()
        st = os.fstat(fd)
        head = _pread_exact(fd, HEADER_BYTES, 0)
        n, packs, names_len, offsets = unpack_header(head, repo_id, st.st_size)
        size, sizes = st.st_size, section_sizes(n, packs, names_len)
        sections = [_pread_exact(fd, k, at) for at, k in zip(offsets[:4], sizes[:4], strict=True)]
        mac = blake3.blake3(head[: HEADER.size], key=key)
        for section in sections:
            mac.update(section)
        if not hmac.compare_digest(mac.digest(), head[HEADER.size : HEADER.size + 32]):
            raise ValueError("index cache: header authentication failed")
        names, pack_table, fence, self._tags = sections
        # `superseded`: listed files known to count for nothing (superseded or below the floor).
        self.covered, self.superseded, self.floor = decode_names(names)
        self.pack_ids = [pack_table[32 * i : 32 * i + 32] for i in range(packs)]
        self.path, self._file, self._ino, self._key = path, file, st.st_ino, key
        self._n: int = n
        self._fence = memoryview(fence).cast("Q")
        self._mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        with contextlib.suppress(AttributeError, OSError):
            self._mm.madvise(mmap.MADV_RANDOM)  # lookups touch a few pages each: no read-ahead
        view = memoryview(self._mm)
        self._at = offsets[4:7]
        self._raw = [view[at : at + w * n] for at, w in zip(self._at, WIDTHS, strict=True)]
        self._keys = self._raw[0].cast("Q")
        self._fields = self._raw[2].cast("I")
        self._verified = bytearray(blocks(n))

    def __len__(self) -> int:
        return self._n

    def _verify(self, block: int) -> None:
        start, end = block * BLOCK, min(self._n, (block + 1) * BLOCK)
        self._expect(block, block_tag(self._key, block, self._raw, start, end))
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
        dtype, shape = COLUMN_LAYOUT[i]
        count = self._n * WIDTHS[i] // dtype.itemsize
        column: np.ndarray = np.frombuffer(self._mm, dtype, count, self._at[i]).reshape(shape)
        return column

    def verify_all(self) -> None:
        for block in range(len(self._verified)):
            if not self._verified[block]:
                self._verify(block)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids, fields = self._column(1), self._column(2)
        for start in range(0, self._n, _STEP_ROWS):
            yield ids[start : start + _STEP_ROWS], fields[start : start + _STEP_ROWS]

    def read_verified(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of rows [start, end) (start at a block boundary), read with pread rather
        than through the mapping (a rewrite then does not count the whole file as resident),
        and checked against their tags; BaseDamaged if one fails."""
        parts = []
        for at, width in zip(self._at, WIDTHS, strict=True):
            data = os.pread(self._file.fileno(), width * (end - start), at + width * start)
            if len(data) != width * (end - start):
                self.damaged()
            parts.append(data)
        keys = np.frombuffer(parts[0], dtype="<u8")
        ids = np.frombuffer(parts[1], dtype=np.uint8).reshape(-1, 32)
        fields = np.frombuffer(parts[2], dtype="<u4").reshape(-1, 4)
        for s in range(0, end - start, BLOCK):
            block = (start + s) // BLOCK
            self._expect(block, block_tag(self._key, block, parts, s, min(end - start, s + BLOCK)))
        return keys, ids, fields

    def first_key(self, index: int) -> int:
        """The key of entry `index` (a block boundary), from the authenticated fence."""
        return self._fence[index // BLOCK]


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise ValueError("index cache: short read")
    return data
