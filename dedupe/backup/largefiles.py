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
from dedupe.backup.offload import Offloader
from dedupe.errors import DedupeError
from dedupe.model.tree import Node

# Files at least this big are read on the read-ahead thread while the walk goes on.
READ_AHEAD_MIN = 8 << 20
# With a helper process: files at least this big go to it while it has room (see above).
OFFLOAD_MIN = 1 << 20
OFFLOAD_QUEUE = 64 << 20

StoredFile = tuple[Node | None, ArchiveStats]  # a lane's result: the node (None: left out)


class LargeFiles:
    """The two lanes of one walk: its helper process and its read-ahead thread."""

    def __init__(self, files: FileStore, offload: Offloader | None = None) -> None:
        self._files = files
        self._offload = offload
        self._ahead_pool: ThreadPoolExecutor | None = None
        self._helper_pool: ThreadPoolExecutor | None = None  # talks to the helper process
        self._helper_queued = 0  # bytes of files waiting for or in the helper
        self._queued_lock = threading.Lock()

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

    def close(self) -> None:
        """Stop the lanes' threads (waiting for a file they are storing)."""
        for pool in (self._helper_pool, self._ahead_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._helper_pool = self._ahead_pool = None

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
        assert self._offload is not None
        try:
            self._offload.start()
        except DedupeError as exc:  # e.g. no memory or processes left for a second one
            self._files.warn(f"{exc}; storing large files in this process instead")
            self._offload = None
            self._helper_queued = 0
            return self._submit_ahead(path, name, st)
        if self._helper_pool is None:
            self._helper_pool = ThreadPoolExecutor(1, thread_name_prefix="helper")
        return self._helper_pool.submit(self._helper_file, path, name, st)

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
            node, stats = offload.store(path, name, st, files.report, files.warn)
            files.report(0, 1)
            if node is not None and not stats.unstable:
                files.remember(path, st, node)
            return node, stats
        finally:
            with self._queued_lock:
                self._helper_queued = max(0, self._helper_queued - st.st_size)

    def _ahead_file(self, path: bytes, name: bytes, st: os.stat_result) -> StoredFile:
        """On the read-ahead thread: store one file, with statistics of its own."""
        stats = ArchiveStats()
        return self._files.store_now(path, name, st, stats), stats
