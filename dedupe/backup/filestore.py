"""Storing one file: the one place a file's content becomes blobs and its tree node.

`FileStore` is what every lane calls to save a file: the tree walk (dedupe.backup.archiver),
the read-ahead thread (dedupe.backup.largefiles) and the helper process (dedupe.backup.offload).
It knows nothing of folders, of the walk or of the lanes, so none of them needs another's
internals. What it guarantees for every file it is given:

- the file is opened only through `open_listed`: never a FIFO, a device or a file that took
  the listed one's place, and the open never blocks;
- the files cache is used only for content it holds whose blobs are stored (or a trusted
  cache), and is told a file's content only when the file did not change while it was read;
- a file that changes while it is read is saved as read, with a warning, and counted as
  `unstable` (its folder is then never cached); an unreadable file is left out, named in
  `errors` and through `warn`, and counted as unstable too;
- progress is reported as deltas (bytes read, files done) through the `report` callback.

Statistics go into the `ArchiveStats` the caller passes, so each thread keeps its own and no
counter is shared between threads.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import BinaryIO

from dedupe.backup.filescache import FilesCache
from dedupe.backup.walkparts import Owners, open_listed
from dedupe.chunker import Chunker
from dedupe.model.tree import FILE, Node
from dedupe.repo.writer import BlobWriter

# Files at least this big are hashed block by block in the writer's workers (`_store_stream`);
# smaller ones are read whole in one call (`read_small`) and stored in the calling thread.
ASYNC_MIN = 1 << 20

Report = Callable[[int, int], None]  # (bytes read since the last call, files done since then)
Warn = Callable[[str], None]
Progress = Callable[[int, int], None]  # (bytes read so far, files so far)


@dataclass
class ArchiveStats:
    """What one snapshot (or one file of it) read and saved. `unstable` counts files that were
    left out or changed while read: a folder holding one is never put in the files cache."""

    files: int = 0
    dirs: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    files_unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    unstable: int = 0

    def merge(self, other: ArchiveStats) -> None:
        """Add another lane's counts (a file stored on another thread or in the helper)."""
        self.files += other.files
        self.dirs += other.dirs
        self.bytes_read += other.bytes_read
        self.bytes_total += other.bytes_total
        self.files_unchanged += other.files_unchanged
        self.errors.extend(other.errors)
        self.unstable += other.unstable


class ProgressTotal:
    """One running total of bytes read and files done, fed by every lane of one snapshot (each
    call adds a delta) and passed on to `progress` under a lock, so the totals it sees never go
    down."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._bytes = 0
        self._files = 0

    def add(self, read: int, files: int) -> None:
        progress = self._progress
        if progress is not None:
            with self._lock:
                self._bytes += read
                self._files += files
                progress(self._bytes, self._files)


class PendingFile:
    """A file whose large blocks the writer's workers are still hashing and storing: the walk
    goes on reading meanwhile and takes the finished node (`result`) when it writes the folder."""

    __slots__ = ("_node", "_futures", "_remember", "_cache")

    def __init__(
        self,
        node: Node,
        futures: list[Future[list[bytes]]],
        remember: tuple[bytes, os.stat_result] | None,
        cache: FilesCache | None,
    ) -> None:
        self._node = node
        self._futures = futures
        self._remember = remember
        self._cache = cache

    @property
    def size(self) -> int:
        """The file's size as read."""
        return self._node.size

    @property
    def type(self) -> str:
        """FILE, like the node it becomes."""
        return self._node.type

    def done(self) -> bool:
        """Whether every block is stored (so `result` will not wait)."""
        return all(future.done() for future in self._futures)

    def result(self) -> Node:
        """The node with its content ids (raises what storing a block raised)."""
        ids = [blob_id for future in self._futures for blob_id in future.result()]
        if self._remember is not None and self._cache is not None:
            self._cache.remember(self._remember[0], self._remember[1], ids)
        return dataclasses.replace(self._node, content=tuple(ids))


class FileStore:
    """Stores files through one BlobWriter (see the module docstring for what it guarantees).

    Safe to call from several threads at once, each with its own ArchiveStats."""

    def __init__(
        self,
        writer: BlobWriter,
        chunker: Chunker,
        cache: FilesCache | None = None,
        warn: Warn = lambda msg: None,
        report: Report = lambda read, files: None,
        owners: Owners | None = None,
    ) -> None:
        self.writer = writer
        self.chunker = chunker
        self.cache = cache
        self.warn = warn
        self.report = report
        self.owners = owners if owners is not None else Owners()

    # --- the files cache -------------------------------------------------------------------

    def cache_hit(self, path: bytes, st: os.stat_result) -> bool:
        """Whether the files cache holds this file's content (so it need not be read)."""
        return self.cache is not None and self._cached(self.cache.key(path), st) is not None

    def remember(self, path: bytes, st: os.stat_result, node: Node) -> None:
        """Tell the files cache the content of a file stored elsewhere (the helper process)."""
        if self.cache is not None:
            self.cache.remember(self.cache.key(path), st, list(node.content))

    def cached_node(
        self, path: bytes, name: bytes, st: os.stat_result, stats: ArchiveStats
    ) -> Node | None:
        """The file's node if the files cache holds its content (counted as unchanged, as
        `store` counts it), else None: the caller then stores it, here or elsewhere."""
        cache = self.cache
        if cache is None:
            return None
        key = cache.key(path)
        cached = self._cached(key, st)
        if cached is None:
            return None
        stats.files_unchanged += 1
        stats.files += 1
        stats.bytes_total += st.st_size
        self.report(0, 1)
        cache.remember(key, st, cached)
        return self.owners.node(name, FILE, st, size=st.st_size, content=tuple(cached))

    def _cached(self, key: bytes, st: os.stat_result) -> list[bytes] | None:
        """The file's content ids if the files cache holds them and they are stored."""
        assert self.cache is not None
        cached = self.cache.lookup(key, st)
        if cached is not None and (self.cache.trusted or all(map(self.writer.has, cached))):
            return cached
        return None

    # --- storing ---------------------------------------------------------------------------

    def store_now(
        self, path: bytes, name: bytes, st: os.stat_result, stats: ArchiveStats
    ) -> Node | None:
        """`store`, waiting for the file's blocks: its finished node, or None if left out."""
        node = self.store(path, name, st, stats)
        return node.result() if isinstance(node, PendingFile) else node

    def store(
        self, path: bytes, name: bytes, st: os.stat_result, stats: ArchiveStats
    ) -> Node | PendingFile | None:
        """Store the regular file `path` that the walk listed with `st` (its lstat): its node,
        a PendingFile while workers still store its blocks, or None if it could not be read."""
        cache = self.cache
        key = None
        if cache is not None:
            node = self.cached_node(path, name, st, stats)
            if node is not None:
                return node
            key = cache.key(path)
        stored = self._read(path, st, stats)
        if stored is None:
            return None
        ids, futures, size, unreported, after = stored
        changed = (after.st_mtime_ns, after.st_size) != (st.st_mtime_ns, st.st_size) or (
            size != st.st_size
        )
        if changed:
            self.warn(f"{os.fsdecode(path)} changed while it was read; saved as read")
            stats.unstable += 1
            st = after
        stats.files += 1
        stats.bytes_total += size
        self.report(unreported, 1)
        # Only content read from a file that held still goes into the files cache.
        remember = None if changed or key is None else (key, st)
        if futures is not None:
            node = self.owners.node(name, FILE, st, size=size)
            return PendingFile(node, futures, remember, cache)
        assert ids is not None
        if remember is not None and cache is not None:
            cache.remember(remember[0], remember[1], ids)
        return self.owners.node(name, FILE, st, size=size, content=tuple(ids))

    def _read(
        self, path: bytes, st: os.stat_result, stats: ArchiveStats
    ) -> (
        tuple[list[bytes] | None, list[Future[list[bytes]]] | None, int, int, os.stat_result] | None
    ):
        """Read and store the file's content: (its blob ids, or the futures of its blocks'
        ids; its size as read; bytes read but not reported yet; its fstat after the read),
        or None if it could not be read (reported)."""
        try:  # the one open of every lane (walk, read-ahead, helper): never blocks
            fd = open_listed(path, st)
        except OSError as exc:
            self._error(path, exc, stats)
            return None
        try:
            try:
                small = read_small(fd, st.st_size)
                if small is not None:
                    ids = self._store_small(small)
                    stats.bytes_read += len(small)
                    return ids, None, len(small), len(small), os.fstat(fd)
                readinto = open(fd, "rb", buffering=0, closefd=False).readinto
                if st.st_size < ASYNC_MIN:  # it grew while read_small read it: stored here
                    ids, size = self._store_chunks(readinto, st.st_size, stats)
                    return ids, None, size, size, os.fstat(fd)
                futures, size = self._store_stream(readinto, st.st_size, stats)
                return None, futures, size, 0, os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self._error(path, exc, stats)
            return None

    def store_stream(
        self, name: bytes, stream: BinaryIO, mtime_ns: int, stats: ArchiveStats
    ) -> Node:
        """Store a stream (stdin) as the file `name`, owned by this process's user."""
        readinto: Callable[[memoryview], int] = stream.readinto  # type: ignore[attr-defined]
        futures, size = self._store_stream(readinto, None, stats)
        stats.files += 1
        stats.bytes_total += size
        node = Node(
            name=name,
            type=FILE,
            mode=0o600,
            mtime_ns=mtime_ns,
            uid=os.getuid(),
            gid=os.getgid(),
            size=size,
        )
        return PendingFile(node, futures, None, None).result()

    def _store_small(self, data: bytes) -> list[bytes]:
        add = self.writer.add
        return [add(chunk) for chunk in self.chunker.cut(data)] if data else []

    def _store_chunks(
        self, readinto: Callable[[memoryview], int], size_hint: int, stats: ArchiveStats
    ) -> tuple[list[bytes], int]:
        """(blob ids, size) of a file stored chunk by chunk in this thread."""
        ids = []
        size = 0
        add = self.writer.add
        for chunk in self.chunker.chunks(readinto, size_hint):
            ids.append(add(chunk))
            size += len(chunk)
        stats.bytes_read += size
        return ids, size

    def _store_stream(
        self, readinto: Callable[[memoryview], int], size_hint: int | None, stats: ArchiveStats
    ) -> tuple[list[Future[list[bytes]]], int]:
        """(futures of the block ids, size) of a large file or a stream: this thread reads and
        cuts, workers hash and store; each block is counted and reported as it is read."""
        futures = []
        size = 0
        for block in self.chunker.blocks(readinto, size_hint):
            futures.append(self.writer.add_chunks_async(block))
            read = sum(len(c) for c in block)
            size += read
            stats.bytes_read += read
            self.report(read, 0)
        return futures, size

    def _error(self, path: bytes, exc: OSError, stats: ArchiveStats) -> None:
        message = f"cannot read {os.fsdecode(path)}: {exc.strerror or exc}"
        stats.unstable += 1
        stats.errors.append(message)
        self.warn(message)


def read_small(fd: int, size: int) -> bytes | None:
    """A small file's whole content in one read, or None (large, or it grew while read: the
    caller then streams it from where it stands now, the start).

    Most files of a server are small; one `os.read` into a bytes object spares them the block
    buffers and generators that large files need (per-file Python is what bounds a walk of many
    small files).
    """
    if size >= ASYNC_MIN:
        return None
    parts = []
    got = 0
    while got <= size:
        part = os.read(fd, size + 1 - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    if got > size:
        os.lseek(fd, 0, os.SEEK_SET)  # it grew: stream it like a large file
        return None
    return parts[0] if len(parts) == 1 else b"".join(parts)
