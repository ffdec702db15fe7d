"""Writing the local index cache: one file, in key order, authenticated, then renamed into place.

`CacheWriter` receives the sorted entries in chunks and writes each column at its final place,
tagging every block of 128 entries as it goes; leaving its `with` block writes the names, pack
ids, fence and tags, the header and its MAC, and renames the temporary file (0600, created with
O_EXCL under a random name, so it never follows a planted link) over the cache. An error removes
the temporary file; a crash leaves one that the next writer deletes after an hour, or a torn file
that fails its MACs and is rebuilt, so there is no fsync. `Spill` lets a cold build sort one
bucket of entries at a time. The layout is `dedupe.repo.cacheformat`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator

import blake3
import numpy as np

from dedupe.repo.cacheformat import (
    BLOCK,
    HEADER_BYTES,
    WIDTHS,
    align,
    block_tag,
    encode_names,
    pack_header,
    section_sizes,
)
from dedupe.repo.index import ROW_BYTES

_BUCKET_ROWS = 1 << 19  # rows per bucket of a cold build (each is sorted in memory)


def _pwrite_all(fd: int, data: bytes | np.ndarray, offset: int) -> None:
    view = np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else memoryview(data)
    view = view.cast("B")
    while len(view):
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class CacheWriter:
    """Writes one cache file: up to `capacity` rows arrive in key order, in chunks. Leaving the
    `with` block normally authenticates it and renames it into place; an error removes it."""

    def __init__(
        self,
        path: str,
        key: bytes,
        repo_id: bytes,
        capacity: int,
        pack_ids: list[bytes],
        covered: Iterable[str],
        superseded: Iterable[str],
        floor: int,
    ) -> None:
        folder, name = os.path.split(path)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        for other in os.listdir(folder):  # left by a killed writer (a live one writes)
            stale = os.path.join(folder, other)
            with contextlib.suppress(OSError):
                if other.endswith(".tmp") and time.time() - os.lstat(stale).st_mtime > 3600:
                    os.unlink(stale)
        self._path, self._key, self._repo_id = path, key, repo_id
        self._tmp = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tmp")
        self._names = encode_names(covered, superseded, floor)
        self._pack_table = b"".join(pack_ids)
        self._packs, self._capacity = len(pack_ids), capacity
        self._offsets, at = [], HEADER_BYTES
        for length in section_sizes(capacity, self._packs, len(self._names)):
            self._offsets.append(at)
            at = align(at + length)
        self._size = at  # the file is extended by writing its sections
        self._n = 0
        self._fence: list[int] = []
        self._tags: list[bytes] = []
        self._tail: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # O_EXCL on a random name: never follows a planted link; 0600 from the start.
        self._fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)

    def __enter__(self) -> CacheWriter:
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
        for column, width, at in zip(columns, WIDTHS, self._offsets[4:7], strict=True):
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
        self._tags.append(block_tag(self._key, len(self._tags), columns, start, end))

    def _finish(self) -> None:
        if self._tail is not None:
            views = [np.ascontiguousarray(c).data.cast("B") for c in self._tail]
            self._tag(views, 0, len(self._tail[0]))
        fence = np.array(self._fence, dtype="<u8").tobytes()
        sections = [self._names, self._pack_table, fence, b"".join(self._tags)]
        for data, at in zip(sections, self._offsets[:4], strict=False):
            _pwrite_all(self._fd, data, at)
        head = pack_header(
            self._repo_id, self._n, self._packs, len(self._names), self._offsets, self._size
        )
        mac = blake3.blake3(head, key=self._key)
        for data in sections:
            mac.update(data)
        _pwrite_all(self._fd, head + mac.digest(), 0)
        os.ftruncate(self._fd, self._size)
        os.close(self._fd)
        self._fd = -1
        # No fsync: a file torn by a crash fails its MACs and is rebuilt.
        os.replace(self._tmp, self._path)

    def _discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


class Spill:
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
