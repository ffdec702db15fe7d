"""What the mount keeps in memory: a few recent blobs, folder listings by tree id, file layouts.

Guarantees (why: a mount stays up for hours while a viewer opens a 1 GiB dump):
- `BlobCache` holds at most `max_bytes` of plaintext (and never fewer than one blob), least
  recently used first out, so reading a file of any size costs a bounded amount of memory; a
  blob that several readers want at once is fetched once (the others wait for it).
- `TreeMemo` decodes each folder (tree id) once and keeps it while it is among the recently used
  ones, bounded by the total number of entries: folders shared between snapshots are read once.
- A read that ends inside a blob starts fetching the blob after it (one at a time, into the
  same bounded cache), so a sequential reader rarely waits on the storage.
- `FileLayout` maps file offsets to blobs from the index's sizes alone: opening a file reads no
  content, and a read fetches only the blobs its byte range touches.
Each is safe to use from several threads (libfuse calls from a pool).
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from dedupe.errors import DamageError
from dedupe.model.tree import Node

BLOB_CACHE_BYTES = 32 * 1024 * 1024
"""Plaintext kept for reads: a few blobs at the largest chunk size (16 MiB), many at 1 MiB."""
TREE_MEMO_ENTRIES = 500_000
"""Folder entries kept decoded (a few hundred bytes each): far more than one browses at once."""


class BlobCache:
    """Recently read blobs, bounded by their total size; `get` fetches on a miss."""

    def __init__(self, fetch: Callable[[bytes], bytes], max_bytes: int = BLOB_CACHE_BYTES):
        self._fetch = fetch
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._fetching: dict[bytes, threading.Event] = {}
        self.fetches = 0  # blobs read from the repository (a miss each)
        # Read-ahead: one blob at a time, so it adds at most one blob in flight to the bound.
        self._ahead: ThreadPoolExecutor | None = ThreadPoolExecutor(1, "mount-read-ahead")

    def get(self, blob_id: bytes) -> bytes:
        """The blob's plaintext; DamageError (raised to every waiter) if it cannot be read."""
        while True:
            with self._lock:
                data = self._blobs.get(blob_id)
                if data is not None:
                    self._blobs.move_to_end(blob_id)
                    return data
                waiting = self._fetching.get(blob_id)
                if waiting is None:
                    done = self._fetching[blob_id] = threading.Event()
                    break
            waiting.wait()  # another thread fetches it; then look again (or fetch, if it failed)
        try:
            data = self._fetch(blob_id)
            with self._lock:
                self.fetches += 1
                self._put(blob_id, data)
            return data
        finally:
            with self._lock:
                del self._fetching[blob_id]
            done.set()

    def prefetch(self, blob_id: bytes) -> None:
        """Start reading a blob a sequential reader will want next, unless it is cached or on
        its way; damage is left for the read that needs it to report."""
        with self._lock:
            if blob_id in self._blobs or blob_id in self._fetching or self._ahead is None:
                return
            ahead = self._ahead
        ahead.submit(self._warm, blob_id)

    def _warm(self, blob_id: bytes) -> None:
        with contextlib.suppress(DamageError):
            self.get(blob_id)

    def close(self) -> None:
        """Stop reading ahead (at unmount)."""
        with self._lock:
            ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.shutdown(wait=True, cancel_futures=True)

    def _put(self, blob_id: bytes, data: bytes) -> None:
        self._blobs[blob_id] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes and len(self._blobs) > 1:
            _old, old = self._blobs.popitem(last=False)
            self._bytes -= len(old)

    @property
    def cached_bytes(self) -> int:
        return self._bytes


class TreeMemo:
    """Decoded folders by tree id: name -> entry, in stored (name) order."""

    def __init__(
        self, load: Callable[[bytes], Sequence[Node]], max_entries: int = TREE_MEMO_ENTRIES
    ):
        self._load = load
        self.max_entries = max_entries
        self._trees: OrderedDict[bytes, dict[bytes, Node]] = OrderedDict()
        self._entries = 0
        self._lock = threading.Lock()

    def get(self, tree_id: bytes) -> dict[bytes, Node]:
        """The folder's entries by name; DamageError if its tree cannot be read."""
        with self._lock:
            entries = self._trees.get(tree_id)
            if entries is not None:
                self._trees.move_to_end(tree_id)
                return entries
        # Read outside the lock: a slow storage must not stall every other folder. Two threads
        # may both read a tree nobody had; the second result is simply dropped.
        entries = {node.name: node for node in self._load(tree_id)}
        with self._lock:
            if tree_id not in self._trees:
                self._trees[tree_id] = entries
                self._entries += len(entries) + 1
                while self._entries > self.max_entries and len(self._trees) > 1:
                    _old, old = self._trees.popitem(last=False)
                    self._entries -= len(old) + 1
        return entries


class FileLayout:
    """Where each blob of a file starts, from the sizes the index records."""

    def __init__(self, blob_ids: Sequence[bytes], sizes: Sequence[int], recorded_size: int):
        self.blob_ids = list(blob_ids)
        self.starts: list[int] = []
        offset = 0
        for size in sizes:
            self.starts.append(offset)
            offset += size
        if offset != recorded_size:
            raise DamageError(
                f"its blobs add up to {offset} bytes, but the folder records {recorded_size}"
            )
        self.size = offset

    def read(self, offset: int, length: int, blob: Callable[[bytes], bytes]) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end of the file), fetching each blob
        the range touches through `blob`."""
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        index = bisect.bisect_right(self.starts, offset) - 1
        pieces = []
        position = offset
        while position < end:
            start = self.starts[index]
            data = blob(self.blob_ids[index])
            if len(data) != self._blob_size(index):
                raise DamageError(f"blob {self.blob_ids[index].hex()[:16]} has the wrong size")
            pieces.append(data[position - start : end - start])
            position = start + len(data)
            index += 1
        return b"".join(pieces)

    def blob_after(self, position: int) -> bytes | None:
        """The id of the blob that follows the one holding byte `position` (None if none)."""
        if not 0 <= position < self.size:
            return None
        index = bisect.bisect_right(self.starts, position)  # the following blob's index
        return self.blob_ids[index] if index < len(self.blob_ids) else None

    def _blob_size(self, index: int) -> int:
        following = self.starts[index + 1] if index + 1 < len(self.starts) else self.size
        return following - self.starts[index]
