"""Large files stored by a helper process, beside the walk of the small ones.

Why a process: a walk of tens of thousands of small files is per-file Python that holds the
GIL, and a thread cutting, hashing and sealing a database dump beside it needs the same GIL
between every compiled call. Two interpreters do not share one. Measured on the benchmark's 2 GB
corpus on 2 cores: one process 12.9-16.3 s; the small-file folders and the large files as two
processes at once 8.5-9.0 s.

The helper opens the same repository with the key the parent already unlocked (sent over a
private socket pair, never through argv, the environment or a file), through its own
connection to the same storage (`storage_recipe`: a local folder by path; an SFTP location as
a second ssh session with the same target, key file and known_hosts; an S3 bucket with the same
endpoint and prefix, its credentials from the environment it inherits; none of them a secret),
stores each file it is
given through a FileStore (dedupe.backup.filestore, the same code every lane stores a file
with) over its own BlobWriter (its own packs and index files), and returns the file's tree node.
The parent keeps everything else: the walk, the trees, the files cache, the snapshot. `finish`
makes the helper's index durable; the snapshot session (dedupe.backup.session) calls it before
it writes its own index, and both before the manifest, so a snapshot never names a blob no index
knows. If the parent dies, the
helper dies at once too: it watches a lifeline pipe whose only writer end the parent holds
(the kernel closes it however the parent ends); what it wrote unindexed is a leftover for gc.

Messages (pickles between the two halves of one command of one user):
  parent -> helper: ("open", key, settings, key_name, storage recipe, cache_dir, workers),
                    ("file", path, name, stat), ("files", [(path, name, stat), ...]),
                    ("flush",), ("abort",)
  helper -> parent: ("progress", bytes), ("warn", text), ("node", node, stats),
                    ("nodes", [(node, stats), ...]), ("error", exception),
                    ("flushed", write stats, index names),
                    ("unavailable", text): it could not open the repository and wrote
                    nothing (the parent stores the files itself)
Small files come in batches ("files"), so that a folder of one small file does not cost a
round trip; progress is sent per MiB read, not per file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from dedupe.backup.filestore import ArchiveStats, FileStore
from dedupe.backup.memory import bound_freed_memory
from dedupe.errors import DedupeError
from dedupe.model.tree import Node
from dedupe.repo.repository import Repository
from dedupe.repo.writer import BlobWriter, WriteStats
from dedupe.storage.base import Storage
from dedupe.storage.local import LocalStorage
from dedupe.storage.retry import RetryingStorage

Report = Callable[[int, int], None]
Warn = Callable[[str], None]

# The helper's progress messages: one per this many bytes read (small files come in batches).
REPORT_EVERY = 1 << 20
# Plaintext bytes the helper's writer holds for its sealing workers at most (BlobWriter's
# max_inflight): four of the chunker's 8 MiB blocks.
HELPER_INFLIGHT = 32 << 20


# The helper's first lines: load the `dedupe` package from the folder the parent's own copy
# came from (argv[1]), by file location, and only then import from it. `-P` keeps Python from
# putting the working directory (or the script's folder) first on sys.path: run as root in a
# user's folder, `python -m dedupe.offload` ran that user's planted dedupe/offload.py, which
# is then sent the master key. The user's site-packages and PYTHONPATH still work (no -I).
_BOOT = (
    "import importlib.util, sys\n"
    "folder = sys.argv[1]\n"
    "spec = importlib.util.spec_from_file_location(\n"
    "    'dedupe', folder + '/__init__.py', submodule_search_locations=[folder])\n"
    "package = importlib.util.module_from_spec(spec)\n"
    "sys.modules['dedupe'] = package\n"
    "spec.loader.exec_module(package)\n"
    "from dedupe.backup.offload import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


# How the helper reopens the parent's storage: ("local", root), ("sftp", SSHTarget, url,
# connections, timeout, reconnect attempts) or ("s3", bucket, prefix, endpoint, url, multipart
# threshold, part size, connections, list page size), and the RetryingStorage settings around it
# (None: none). Plain values only: no password, key or credential is ever part of it.
Recipe = tuple[tuple[Any, ...], tuple[float, ...] | None]


def storage_recipe(storage: Storage) -> Recipe | None:
    """How a helper process opens the same storage as `storage`, or None when it cannot (a
    wrapper it does not know, an SFTP backend given its own environment): then the snapshot
    keeps one process. The backend modules are looked up only if loaded: whatever `storage` is,
    its module is."""
    retry: tuple[float, ...] | None = None
    inner: object = storage
    if isinstance(storage, RetryingStorage):
        retry = (
            storage.attempts,
            storage.base_delay,
            storage.max_delay,
            storage.max_elapsed,
            storage.slow_after,
        )
        inner = storage.inner
    if isinstance(inner, LocalStorage):
        return ("local", inner.root), retry
    sftp = sys.modules.get("dedupe.storage.sftp")
    if sftp is not None and isinstance(inner, sftp.SFTPStorage):
        if inner.environ is not None:  # ssh with an environment of its own, not inherited
            return None
        opening = (inner.target, inner.url, inner.max_connections, inner.timeout)
        return ("sftp", *opening, inner.reconnect_attempts), retry
    s3 = sys.modules.get("dedupe.storage.s3")
    if s3 is not None and isinstance(inner, s3.S3Storage):
        sizes = (inner.multipart_threshold, inner.part_size, inner.max_connections)
        return (
            "s3",
            inner.bucket,
            inner.prefix,
            inner.endpoint,
            inner.url,
            *sizes,
            inner.list_page_size,
        ), retry
    return None


def open_recipe(recipe: Recipe) -> Storage:
    """The helper's side of `storage_recipe`: its own connection to the same storage."""
    opening, retry = recipe
    storage: Storage
    if opening[0] == "local":
        storage = LocalStorage(opening[1])
    elif opening[0] == "sftp":
        from dedupe.storage.sftp import SFTPStorage

        _, target, url, connections, timeout, reconnects = opening
        storage = SFTPStorage(
            target,
            url=url,
            connections=connections,
            timeout=timeout,
            reconnect_attempts=reconnects,
        )
    elif opening[0] == "s3":
        from dedupe.storage.s3 import S3Storage

        _, bucket, prefix, endpoint, url, threshold, part, connections, page = opening
        storage = S3Storage(
            bucket,
            prefix,
            endpoint=endpoint,
            url=url,
            multipart_threshold=threshold,
            part_size=part,
            connections=connections,
            list_page_size=page,
        )
    else:
        raise DedupeError(f"the helper process cannot open storage of kind {opening[0]!r}")
    if retry is not None:
        attempts, base, most, elapsed, slow = retry
        storage = RetryingStorage(storage, int(attempts), base, most, elapsed, slow_after=slow)
    return storage


def helper_command(conn_fd: int, lifeline_fd: int) -> list[str]:
    """The helper's command line: this interpreter, safe paths, this copy of the package."""
    # This file is dedupe/backup/offload.py: the package is two folders up.
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [sys.executable, "-P", "-c", _BOOT, package_dir, str(conn_fd), str(lifeline_fd)]


class HelperUnavailable(DedupeError):
    """The helper process started but could not open the repository (a second ssh login
    refused, a bucket it cannot reach). It wrote nothing: the file it was given, and every
    later one, is stored by the parent instead (dedupe.backup.largefiles)."""


class Offloader:
    """The parent's side: starts the helper at the first large file, one file at a time."""

    def __init__(self, repo: Repository, workers: int = 2) -> None:
        recipe = storage_recipe(repo.storage)
        if recipe is None:
            raise DedupeError("a helper process cannot open this repository's storage")
        self._repo = repo
        self._recipe = recipe  # how the helper opens the same storage (no secret in it)
        self._workers = workers
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # one conversation with the helper at a time
        self._start_lock = threading.Lock()
        self._broken = False
        self._unavailable = False  # the helper started but could not open the repository
        self._lifeline: int | None = None  # the write end; the helper dies when it closes

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs, else None."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the helper (once; from any thread). Never waits for a file being stored:
        the walk calls this for every large file it meets, while the helper may be busy with
        a dump for seconds (`store` holds the other lock meanwhile)."""
        if self._conn is not None or self._broken:
            return
        with self._start_lock:
            if self._conn is None and not self._broken:
                self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        lifeline_read, self._lifeline = os.pipe()
        try:
            self._proc = subprocess.Popen(
                helper_command(theirs.fileno(), lifeline_read),
                pass_fds=[theirs.fileno(), lifeline_read],
                stdin=subprocess.DEVNULL,
                cwd="/",  # nothing relative to where the user happens to stand can matter
            )
        except OSError as exc:
            ours.close()
            os.close(self._lifeline)
            self._lifeline = None
            raise DedupeError(f"cannot start the helper process: {exc.strerror}") from None
        finally:
            theirs.close()
            os.close(lifeline_read)
        conn = Connection(ours.detach())
        repo = self._repo
        conn.send(
            (
                "open",
                repo.key,
                repo.settings,
                repo.key_name,
                self._recipe,
                repo.cache_dir,
                self._workers,
            )
        )
        self._conn = conn

    def store(
        self, path: bytes, name: bytes, st: os.stat_result, report: Report, warn: Warn
    ) -> tuple[Node | None, ArchiveStats]:
        """Store one file in the helper: (its node, or None if it was left out; its stats).
        Progress and warnings come through `report` and `warn` meanwhile."""
        with self._lock:
            if self._broken:
                raise DedupeError("the helper process storing large files has stopped")
            conn = self._conn
            if conn is None:
                raise DedupeError("the helper process was not started")
            reply = self._exchange(
                conn,
                ("file", path, name, st),
                "node",
                report,
                warn,
                "the helper process storing large files stopped unexpectedly",
            )
            return reply[1], reply[2]

    def store_batch(
        self, items: list[tuple[bytes, bytes, os.stat_result]], report: Report, warn: Warn
    ) -> list[tuple[Node | None, ArchiveStats]]:
        """Store several (small) files in the helper, in one exchange: each file's node (None:
        left out) and stats, in order."""
        with self._lock:
            if self._broken:
                raise DedupeError("the helper process storing files has stopped")
            conn = self._conn
            if conn is None:
                raise DedupeError("the helper process was not started")
            reply = self._exchange(
                conn,
                ("files", items),
                "nodes",
                report,
                warn,
                "the helper process storing files stopped unexpectedly",
            )
            results: list[tuple[Node | None, ArchiveStats]] = reply[1]
            return results

    def finish(self) -> tuple[WriteStats, list[str]] | None:
        """Make the helper's packs and index durable and stop it: (its WriteStats, its index
        names), or None if it never started."""
        with self._lock:
            if self._conn is None:
                return None
            if self._unavailable:  # it never opened the repository: it wrote nothing
                self._close(wait=60)
                return None
            reply = self._exchange(
                self._conn,
                ("flush",),
                "flushed",
                lambda _read, _files: None,
                lambda _text: None,
                "the helper process storing large files stopped before its index was written",
            )
            self._close(wait=60)
            return reply[1], reply[2]

    def _exchange(
        self,
        conn: Connection,
        request: tuple[object, ...],
        answer: str,
        report: Report,
        warn: Warn,
        lost: str,
    ) -> tuple[Any, ...]:
        """Send `request` and relay progress and warnings until the `answer` message comes.
        The helper's own error is raised as it is; a helper gone silent raises `lost`."""
        try:
            conn.send(request)
            while True:
                message: tuple[Any, ...] = conn.recv()
                kind = message[0]
                if kind == answer:
                    return message
                if kind == "progress":
                    report(message[1], 0)
                elif kind == "warn":
                    warn(message[1])
                elif kind == "error":
                    self._broken = True
                    raise message[1]
                elif kind == "unavailable":
                    self._broken = self._unavailable = True
                    raise HelperUnavailable(
                        f"the helper process could not open the repository ({message[1]})"
                    )
        except (EOFError, OSError):
            self._broken = True
            raise DedupeError(lost) from None

    def abort(self) -> None:
        """Stop the helper; it deletes the packs it wrote that no index names."""
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.send(("abort",))
            except OSError:
                pass
            self._close(wait=30)

    def _close(self, wait: float) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None


# --- the helper process ----------------------------------------------------------------------


def _die_with_parent(lifeline: int) -> None:
    """Exit at once when the parent's end of the lifeline closes (the parent ended, however:
    killed, crashed or finished), even in the middle of a file."""

    def watch() -> None:
        while True:
            try:
                if not os.read(lifeline, 1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        os._exit(1)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _serve(conn: Connection) -> None:
    opening = conn.recv()
    if opening[0] != "open":
        return
    _, key, settings, key_name, recipe, cache_dir, workers = opening
    try:
        repo = Repository(open_recipe(recipe), key, settings, key_name)
        repo.cache_dir = cache_dir
        _ = repo.index  # the parent loaded it just before: the local cache is current
    except Exception as exc:  # noqa: BLE001 - any failure to open means: no helper
        # A second ssh login refused, a bucket this process cannot reach: nothing was written,
        # and the parent stores the files itself (HelperUnavailable).
        conn.send(("unavailable", str(exc) or type(exc).__name__))
        return
    writer = BlobWriter(repo, workers=workers, max_inflight=HELPER_INFLIGHT)
    unreported = [0]  # bytes read and not reported yet: sent per REPORT_EVERY, not per file

    def report(read: int, _files: int) -> None:
        unreported[0] += read
        if unreported[0] >= REPORT_EVERY:
            conn.send(("progress", unreported[0]))
            unreported[0] = 0

    def reply(message: tuple[object, ...]) -> None:
        if unreported[0]:
            conn.send(("progress", unreported[0]))
            unreported[0] = 0
        conn.send(message)

    files = FileStore(
        writer, repo.chunker(), warn=lambda text: conn.send(("warn", text)), report=report
    )
    names_before = len(repo.index_names)
    flushed = False
    try:
        while True:
            message = conn.recv()
            if message[0] == "file":
                _, path, name, st = message
                stats = ArchiveStats()
                node = files.store_now(path, name, st, stats)
                reply(("node", node, stats))
            elif message[0] == "files":
                results = []
                for path, name, st in message[1]:
                    stats = ArchiveStats()
                    results.append((files.store_now(path, name, st, stats), stats))
                reply(("nodes", results))
            elif message[0] == "flush":
                writer.flush()
                flushed = True
                conn.send(("flushed", writer.stats, repo.index_names[names_before:]))
                return
            else:
                return
    finally:
        if not flushed:
            writer.abort()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    bound_freed_memory()
    _die_with_parent(int(argv[2]))
    conn = Connection(int(argv[1]))
    try:
        _serve(conn)
    except (EOFError, ConnectionError):
        return 1  # the parent is gone or gave up: nothing to report to
    except BaseException as exc:  # reported to the parent, which maps it to an exit code
        if not isinstance(exc, DedupeError):
            exc = DedupeError(f"the helper process failed: {type(exc).__name__}: {exc}")
        try:
            conn.send(("error", exc))
        except (OSError, ValueError):
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
