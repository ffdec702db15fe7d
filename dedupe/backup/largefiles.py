"""Large files stored ahead of the walk, so the walk of small files never waits on a dump.

A folder's large files start as soon as the folder is listed, and the walk joins them when it
writes the folder's tree. With a helper process (dedupe.backup.offload), files of OFFLOAD_MIN or
more go to it while its queue holds less than OFFLOAD_QUEUE bytes (a file alone may exceed that:
a dump goes when the helper is idle), so a folder's join never waits long behind a dump. The
others of READ_AHEAD_MIN or more go to this process's read-ahead thread, and the rest are stored
by the walk itself.

Every lane stores a file through the same FileStore (dedupe.backup.filestore), each file with
its own ArchiveStats that the walking thread merges when it joins the file, so no counter is
shared between threads. A helper that cannot start is reported once through `warn`, and its
files are stored in this process instead. `close` stops every lane's thread.
"""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from dedupe.backup.filestore import ArchiveStats, FileStore
from dedupe.backup.offload import HelperUnavailable, Offloader
from dedupe.errors import DedupeError
from dedupe.model.tree import Node

# Files at least this big are read on the read-ahead thread while the walk goes on.
READ_AHEAD_MIN = 8 << 20
# With a helper process: files at least this big go to it while it has room (see above).
OFFLOAD_MIN = 1 << 20
OFFLOAD_QUEUE = 64 << 20
# Smaller files go to the helper too, in batches (one message each way per batch), once the
# walk has met this many that the files cache does not hold: a small snapshot starts no helper.
SMALL_AFTER = 256
BATCH_FILES = 256
BATCH_BYTES = 4 << 20
# What a small file costs the helper beyond its bytes (open, stat, node), counted against its
# queue so that thousands of empty files cannot queue without bound.
FILE_COST = 4096

StoredFile = tuple[Node | None, ArchiveStats]  # a lane's result: the node (None: left out)
Batch = list[tuple[bytes, bytes, os.stat_result, "Future[StoredFile]"]]


class LargeFiles:
    """The two lanes of one walk: its helper process and its read-ahead thread."""

    def __init__(self, files: FileStore, offload: Offloader | None = None) -> None:
        self._files = files
        self._offload = offload
        self._ahead_pool: ThreadPoolExecutor | None = None
        self._helper_pool: ThreadPoolExecutor | None = None  # talks to the helper process
        self._helper_queued = 0  # bytes of files waiting for or in the helper
        self._queued_lock = threading.Lock()
        self._small_seen = 0
        self._batch: Batch = []  # small files not sent to the helper yet
        self._batch_bytes = 0
        self._sent: list[Batch] = []  # batches sent, until every file of theirs is done

    def start(
        self, children: list[tuple[bytes, bytes, os.stat_result]]
    ) -> dict[bytes, Future[StoredFile]]:
        """Start a folder's large files: name -> Future of (node, the file's stats)."""
        started = {}
        for name, child, st in children:
            if not stat.S_ISREG(st.st_mode):
                continue
            size = st.st_size
            if self._offload is not None and size >= OFFLOAD_MIN and self._has_room(size):
                started[name] = self._submit_helper(child, name, st)
            elif size >= READ_AHEAD_MIN:
                started[name] = self._submit_ahead(child, name, st)
        return started

    @property
    def batching(self) -> bool:
        """Whether small files may go to the helper process (`submit_small`)."""
        return self._offload is not None

    def submit_small(
        self, path: bytes, name: bytes, st: os.stat_result
    ) -> Future[StoredFile] | None:
        """Queue a small file (one the files cache does not hold) for the helper, sent with
        others in a batch: the Future of (node, stats), or None when it is stored here (too few
        small files yet for a helper, or the helper's queue is full)."""
        self._small_seen += 1
        offload = self._offload  # (the helper's thread may drop it: HelperUnavailable)
        if offload is None or self._small_seen < SMALL_AFTER:
            return None
        cost = st.st_size + FILE_COST
        if not self._has_room(cost):
            return None
        try:
            offload.start()
        except DedupeError as exc:
            self._helper_failed(exc)
            return None
        future: Future[StoredFile] = Future()
        self._batch.append((path, name, st, future))
        self._batch_bytes += cost
        if len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES:
            self.flush()
        return future

    def flush(self) -> None:
        """Send the small files queued so far to the helper (the walk waits for one of them)."""
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if self._helper_pool is None:
            self._helper_pool = ThreadPoolExecutor(1, thread_name_prefix="helper")
        self._sent = [b for b in self._sent if not b[-1][3].done()]
        self._sent.append(batch)
        self._helper_pool.submit(self._helper_batch, batch)

    def close(self) -> None:
        """Stop the lanes' threads (waiting for a file they are storing)."""
        for pool in (self._helper_pool, self._ahead_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._helper_pool = self._ahead_pool = None
        # Small files never sent or never stored (the walk failed): nobody waits for them,
        # but none is left pending either.
        stopped = DedupeError("the snapshot stopped before this file was stored")
        for batch in [*self._sent, self._batch]:
            for *_file, future in batch:
                if not future.done():
                    future.set_exception(stopped)
        self._sent, self._batch = [], []

    @property
    def running(self) -> bool:
        """Whether any lane's thread is still up (none is once `close` returned)."""
        return self._helper_pool is not None or self._ahead_pool is not None

    def _has_room(self, size: int) -> bool:
        with self._queued_lock:
            if self._helper_queued and self._helper_queued + size > OFFLOAD_QUEUE:
                return False
            self._helper_queued += size
            return True

    def _submit_helper(self, path: bytes, name: bytes, st: os.stat_result) -> Future[StoredFile]:
        offload = self._offload  # (the helper's thread may drop it: HelperUnavailable)
        if offload is None:
            return self._submit_ahead(path, name, st)
        try:
            offload.start()
        except DedupeError as exc:  # e.g. no memory or processes left for a second one
            self._helper_failed(exc)
            return self._submit_ahead(path, name, st)
        if self._helper_pool is None:
            self._helper_pool = ThreadPoolExecutor(1, thread_name_prefix="helper")
        return self._helper_pool.submit(self._helper_file, path, name, st)

    def _helper_failed(self, exc: DedupeError) -> None:
        if self._offload is not None:  # said once, whichever lane met it first
            self._files.warn(f"{exc}; storing large files in this process instead")
        self._offload = None
        self._helper_queued = 0

    def _submit_ahead(self, path: bytes, name: bytes, st: os.stat_result) -> Future[StoredFile]:
        if self._ahead_pool is None:
            self._ahead_pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        return self._ahead_pool.submit(self._ahead_file, path, name, st)

    def _helper_file(self, path: bytes, name: bytes, st: os.stat_result) -> StoredFile:
        """On the helper's conversation thread: store one file in the helper process (or here,
        when the files cache already has it)."""
        files = self._files
        try:
            offload = self._offload
            if offload is None or files.cache_hit(path, st):
                return self._ahead_file(path, name, st)
            try:
                node, stats = offload.store(path, name, st, files.report, files.warn)
            except HelperUnavailable as exc:  # it wrote nothing: this file is stored here
                self._helper_failed(exc)
                return self._ahead_file(path, name, st)
            files.report(0, 1)
            if node is not None and not stats.unstable:
                files.remember(path, st, node)
            return node, stats
        finally:
            with self._queued_lock:
                self._helper_queued = max(0, self._helper_queued - st.st_size)

    def _helper_batch(self, batch: Batch) -> None:
        """On the helper's conversation thread: store a batch of small files in the helper
        process and settle each file's Future (all of them fail if the helper does)."""
        files = self._files
        offload = self._offload
        try:
            if offload is not None:
                try:
                    results = offload.store_batch(
                        [(path, name, st) for path, name, st, _f in batch], files.report, files.warn
                    )
                except HelperUnavailable as exc:  # it wrote nothing: the batch is stored here
                    self._helper_failed(exc)
                    offload = None
            if offload is None:  # stored here: store_now counts and remembers each file itself
                for path, name, st, future in batch:
                    future.set_result(self._ahead_file(path, name, st))
                return
            if len(results) != len(batch):
                raise DedupeError("the helper process answered for the wrong number of files")
        except BaseException as exc:
            for *_file, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            with self._queued_lock:
                cost = sum(st.st_size + FILE_COST for _p, _n, st, _f in batch)
                self._helper_queued = max(0, self._helper_queued - cost)
        files.report(0, len(batch))
        for (path, _name, st, future), (node, stats) in zip(batch, results, strict=True):
            if node is not None and not stats.unstable:
                files.remember(path, st, node)
            future.set_result((node, stats))

    def _ahead_file(self, path: bytes, name: bytes, st: os.stat_result) -> StoredFile:
        """On the read-ahead thread: store one file, with statistics of its own."""
        stats = ArchiveStats()
        return self._files.store_now(path, name, st, stats), stats
