"""The write pipeline: dedupe, compress and seal in worker threads, pack, upload, index.

The caller's thread computes each blob's keyed id (BLAKE3 releases the GIL) and decides at once
whether it is new, so it can go on reading while workers compress and seal (zstd and libsodium
release the GIL too). Sealed blobs go into one of two open packs at random; a full pack is handed
to an uploader thread. Memory is bounded: at most `max_inflight` plaintext bytes wait for
workers and at most two finished packs wait for upload.

Durability order: packs are put first; `flush` then writes the index file naming them. Only
after `flush` returns may a snapshot manifest reference the blobs. Index files are written by
`Repository.write_index`, with the generation of the index floor seen when the index was loaded:
if a gc raised the floor since, they count for nothing, and the snapshot must not commit
(`Repository.index_changed_since_load`).
"""

from __future__ import annotations

import queue
import random
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from dedupe.errors import DedupeError, ObjectNotFound
from dedupe.repo.pack import BlobEntry, PackBuilder
from dedupe.repo.repository import Repository, pack_name

INDEX_EVERY_PACKS = 256
BATCH_BYTES = 1 << 20
BATCH_BLOBS = 64


@dataclass
class WriteStats:
    """What a writer added to the repository."""

    blobs_new: int = 0
    raw_bytes_new: int = 0
    stored_bytes: int = 0
    packs: int = 0


class BlobWriter:
    """Adds blobs to a repository. Use `add`, then `flush` (or `abort` on failure)."""

    def __init__(self, repo: Repository, workers: int = 2, max_inflight: int = 64 << 20) -> None:
        self.repo = repo
        self.stats = WriteStats()
        self._pending: set[bytes] = set()
        self._pending_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seal")
        self._units = max(1, max_inflight >> 16)
        self._inflight = threading.BoundedSemaphore(self._units)
        self._packs = [PackBuilder(), PackBuilder()]
        self._pack_lock = threading.Lock()
        # Uploads run in parallel up to the backend's connection limit (remote backends);
        # a local disk gets one uploader, which already overlaps writing with sealing.
        self._upload_threads = max(1, min(8, repo.storage.max_connections))
        self._uploads: queue.Queue[tuple[bytes, bytes, list[BlobEntry]] | None] = queue.Queue(
            maxsize=self._upload_threads + 1
        )
        self._upload_lock = threading.Lock()
        self._written: list[tuple[bytes, list[BlobEntry]]] = []
        self._unindexed: list[tuple[bytes, list[BlobEntry]]] = []
        self._error: BaseException | None = None
        self._uploaders = [
            threading.Thread(target=self._upload_loop, name=f"upload_{i}", daemon=True)
            for i in range(self._upload_threads)
        ]
        for thread in self._uploaders:
            thread.start()
        self._closed = False
        self._batch: list[tuple[bytes, bytes | memoryview, int]] = []
        self._batch_bytes = 0

    # --- caller side ---------------------------------------------------------------------

    def has(self, blob_id: bytes) -> bool:
        """True if the blob is in the repository or already queued by this writer."""
        return blob_id in self._pending or blob_id in self.repo.index

    def add_stats(self, other: WriteStats) -> None:
        """Count what a helper writer (another process's) added for the same snapshot."""
        with self._pack_lock:
            self.stats.blobs_new += other.blobs_new
            self.stats.raw_bytes_new += other.raw_bytes_new
        with self._upload_lock:
            self.stats.stored_bytes += other.stored_bytes
            self.stats.packs += other.packs

    def _claim(self, blob_id: bytes) -> bool:
        """Mark the blob as ours to store; False if it is stored or claimed already."""
        with self._pending_lock:
            if blob_id in self._pending or blob_id in self.repo.index:
                return False
            self._pending.add(blob_id)
            return True

    def add(self, data: bytes | memoryview) -> bytes:
        """Store `data` unless the repository has it; return its id. May block for memory."""
        blob_id = self.repo.hash(data)
        self.add_with_id(blob_id, data)
        return blob_id

    def add_with_id(self, blob_id: bytes, data: bytes | memoryview) -> bool:
        """Queue the blob if it is new; True if it was."""
        if self._error is not None:
            raise self._error
        if not self._claim(blob_id):
            return False
        units = min(self._units, max(1, len(data) >> 16))
        for _ in range(units):
            self._inflight.acquire()
        # Blobs go to the workers in batches: one task per ~1 MiB or 64 blobs, not per blob,
        # so thousands of small files do not cost a task (and a lock hand-off) each.
        batch = self._batch
        batch.append((blob_id, data, units))
        self._batch_bytes += len(data)
        if self._batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_BLOBS:
            self._submit_batch()
        return True

    def add_chunks_async(self, chunks: list[memoryview]) -> Future[list[bytes]]:
        """Hash and store a block of chunks in a worker; the future gives their ids in order.

        For large files: the caller's thread then only reads and cuts, and hashing moves to
        the workers with compression and sealing, so one thread is never the bottleneck.
        """
        if self._error is not None:
            raise self._error
        total = sum(len(c) for c in chunks)
        units = min(self._units, max(1, total >> 16))
        for _ in range(units):
            self._inflight.acquire()
        return self._pool.submit(self._hash_and_store, chunks, units)

    def _submit_batch(self) -> None:
        if self._batch:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            self._pool.submit(self._seal_batch, batch)

    def flush(self) -> None:
        """Wait for all queued blobs, upload the last packs, write the index. Raises on failure."""
        self._submit_batch()
        self._pool.shutdown(wait=True)
        if self._error is None:
            for builder in self._packs:
                if len(builder):
                    self._finish_pack(builder)
        self._stop_uploaders()
        self._closed = True
        if self._error is not None:
            raise self._error
        if self._unindexed:
            self._write_index()
        for pack_id, entries in self._written:
            self.repo.index.add_pack(pack_id, entries)

    def abort(self) -> None:
        """Stop after a failure: drop queued work and delete packs this writer put that no
        index names (so a failed run leaves nothing half-written behind)."""
        if self._error is None:
            self._error = DedupeError("write aborted")
        self._pool.shutdown(wait=True, cancel_futures=True)
        if not self._closed:
            self._stop_uploaders()
            self._closed = True
        for pack_id, _entries in self._unindexed:
            try:
                self.repo.storage.delete(pack_name(pack_id))
            except ObjectNotFound:
                pass
            except DedupeError:
                break  # the storage is unreachable: gc removes unindexed packs later
        self._unindexed = []

    # --- worker side ---------------------------------------------------------------------

    def _seal_batch(self, batch: list[tuple[bytes, bytes | memoryview, int]]) -> None:
        for blob_id, data, units in batch:
            try:
                if self._error is None:
                    self._store(blob_id, data)
            except BaseException as exc:  # reported to the caller by add/flush
                if self._error is None:
                    self._error = exc
            finally:
                for _ in range(units):
                    self._inflight.release()

    def _hash_and_store(self, chunks: list[memoryview], units: int) -> list[bytes]:
        try:
            ids = []
            hasher = self.repo.hash
            for chunk in chunks:
                blob_id = hasher(chunk)
                ids.append(blob_id)
                if self._error is None and self._claim(blob_id):
                    self._store(blob_id, chunk)
            return ids
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            raise
        finally:
            for _ in range(units):
                self._inflight.release()

    def _store(self, blob_id: bytes, data: bytes | memoryview) -> None:
        """Compress and seal one blob and put it into one of the open packs."""
        sealed = self.repo.blobs.encode(data)
        full = None
        with self._pack_lock:
            builder = self._packs[random.getrandbits(1)]
            builder.add(blob_id, sealed, len(data))
            self.stats.blobs_new += 1
            self.stats.raw_bytes_new += len(data)
            if len(builder) >= self.repo.settings.pack_size:
                full = builder
                self._packs[self._packs.index(builder)] = PackBuilder()
        if full is not None:
            self._finish_pack(full)

    def _finish_pack(self, builder: PackBuilder) -> None:
        entries = builder.entries
        pack_id, data = builder.finish(self.repo.sealer)
        self._uploads.put((pack_id, data, entries))

    def _stop_uploaders(self) -> None:
        for _thread in self._uploaders:
            self._uploads.put(None)
        for thread in self._uploaders:
            thread.join()

    def _upload_loop(self) -> None:
        while True:
            item = self._uploads.get()
            if item is None:
                return
            if self._error is not None:
                continue
            pack_id, data, entries = item
            try:
                self.repo.storage.put(pack_name(pack_id), data)
            except BaseException as exc:
                if self._error is None:
                    self._error = exc
                continue
            with self._upload_lock:
                self.stats.stored_bytes += len(data)
                self.stats.packs += 1
                self._written.append((pack_id, entries))
                self._unindexed.append((pack_id, entries))
                if len(self._unindexed) >= INDEX_EVERY_PACKS:
                    try:
                        self._write_index()
                    except BaseException as exc:
                        if self._error is None:
                            self._error = exc

    def _write_index(self) -> None:
        packs, self._unindexed = self._unindexed, []
        try:
            self.stats.stored_bytes += self.repo.write_index(packs)[1]
        except BaseException:
            # Still unindexed (e.g. the disk filled up): `abort` must delete these packs.
            self._unindexed = packs + self._unindexed
            raise
