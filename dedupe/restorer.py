"""Restore: recreate a snapshot's files under a target folder, never outside it.

Every file system call is made relative to an open descriptor of the folder being filled
(`dir_fd`, `O_NOFOLLOW`), and folders are entered with `O_DIRECTORY | O_NOFOLLOW`. A name can
only be one path component (checked when trees are decoded and again here), so neither `..`, an
absolute name, nor a symlink planted earlier in the same restore can lead a write outside the
target. Blob reads are verified; the first that fails stops the restore with a message naming the
file. Decryption and decompression run in worker threads ahead of the writer; each file is
written sequentially.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from dedupe.errors import DamageError, DedupeError, FormatError
from dedupe.model.tree import DIR, FILE, Node, valid_name
from dedupe.repo.index import Location
from dedupe.repo.repository import Repository
from dedupe.treewalk import count_entries, load_tree

Progress = Callable[[int], None]

PREFETCH_BYTES = 64 << 20
MAX_DEPTH = 400


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes_written: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Step:
    """One thing to create: `path` is the list of components below the target."""

    kind: str
    path: tuple[bytes, ...]
    node: Node


def _selected(path: tuple[bytes, ...], includes: list[tuple[bytes, ...]]) -> tuple[bool, bool]:
    """(restore this entry, descend into it) for the include filters."""
    if not includes:
        return True, True
    for inc in includes:
        if path[: len(inc)] == inc:
            return True, True
        if inc[: len(path)] == path:
            return False, True
    return False, False


def plan(repo: Repository, root: bytes, includes: list[bytes]) -> Iterator[_Step]:
    """Walk the snapshot's trees (in order) and yield what to create, lazily: memory stays
    bounded however many files the snapshot holds."""
    inc_parts = [tuple(p for p in inc.split(b"/") if p) for inc in includes]
    # Refuses before any work if a few hostile trees name each other into an explosion.
    count_entries(repo, root)

    def walk(tree_id: bytes, prefix: tuple[bytes, ...], depth: int) -> Iterator[_Step]:
        if depth > MAX_DEPTH:
            raise FormatError("snapshot trees nest implausibly deep (hostile or damaged)")
        for node in load_tree(repo, tree_id):
            if not valid_name(node.name):  # decode_tree checks too; never trust one layer
                raise FormatError(f"invalid name {node.name!r} in snapshot")
            path = prefix + (node.name,)
            take, descend = _selected(path, inc_parts)
            if node.type == DIR:
                if take or descend:
                    yield _Step("dir", path, node)
                    yield from walk(node.subtree, path, depth + 1)  # type: ignore[arg-type]
                    yield _Step("dir_done", path, node)
            elif take:
                yield _Step("file" if node.type == FILE else "symlink", path, node)

    return walk(root, (), 0)


class _Lookahead:
    """Steps in order, with the blobs of upcoming files already being read and decrypted by
    the pool: at most PREFETCH_BYTES of content and MAX_PENDING steps ahead of the writer.

    Blobs that follow each other in one pack (small files written together, a large file's
    chunks) are read as one run: one storage request and one task for many blobs.
    """

    MAX_PENDING = 10_000
    RUN_GAP = 256 * 1024
    RUN_BYTES = 8 << 20
    RUN_BLOBS = 128

    def __init__(self, steps: Iterator[_Step], pool: ThreadPoolExecutor, repo: Repository) -> None:
        self._steps = steps
        self._pool = pool
        self._repo = repo
        self._pending: deque[_Step] = deque()
        self._futures: deque[tuple[Future, int]] = deque()
        self._ready: deque[bytes | DamageError] = deque()
        self._blob_queue: deque[bytes] = deque()
        self._run: list[tuple[bytes, Location]] = []
        self._run_bytes = 0
        self._ahead = 0
        self._done = False

    def _flush_run(self) -> None:
        if self._run:
            run, size = self._run, self._run_bytes
            self._run, self._run_bytes = [], 0
            self._futures.append((self._pool.submit(self._repo.read_blob_run, run), size))

    def _add_blob(self, blob_id: bytes) -> None:
        loc = self._repo.index.lookup(blob_id)
        if loc is None:
            self._flush_run()
            self._futures.append((self._pool.submit(self._repo.read_blob_or_error, blob_id), 0))
            return
        if self._run:
            last = self._run[-1][1]
            end = last.offset + last.length
            if (
                loc.pack_id != last.pack_id
                or not 0 <= loc.offset - end <= self.RUN_GAP
                or self._run_bytes >= self.RUN_BYTES
                or len(self._run) >= self.RUN_BLOBS
            ):
                self._flush_run()
        self._run.append((blob_id, loc))
        self._run_bytes += loc.raw_length
        self._ahead += loc.raw_length

    def _fill(self) -> None:
        # Blob by blob, not file by file: a 1 GiB dump must not be decoded all at once.
        limit = self.MAX_PENDING
        queue = self._blob_queue
        while self._ahead < PREFETCH_BYTES:
            if queue:
                self._add_blob(queue.popleft())
                continue
            if self._done or len(self._pending) >= limit:
                break
            step = next(self._steps, None)
            if step is None:
                self._done = True
                break
            self._pending.append(step)
            if step.kind == "file":
                queue.extend(step.node.content)
        self._flush_run()

    def __iter__(self) -> Iterator[_Step]:
        while True:
            if not self._pending:
                self._fill()
                if not self._pending:
                    return
            yield self._pending.popleft()
            if self._ahead < PREFETCH_BYTES // 2:
                self._fill()

    def next_blob(self) -> bytes:
        """The next blob in order (the writer takes exactly a file's count of them)."""
        while not self._ready:
            if not self._futures:
                self._fill()
            future, size = self._futures.popleft()
            self._ahead -= size
            result = future.result()
            self._ready.extend(result if isinstance(result, list) else [result])
        item = self._ready.popleft()
        if isinstance(item, DamageError):
            raise item
        return item

    def cancel(self) -> None:
        for future, _size in self._futures:
            future.cancel()


class Restorer:
    """Restores one snapshot (or part of it) under `target`."""

    def __init__(
        self,
        repo: Repository,
        target: str,
        workers: int = 2,
        progress: Progress | None = None,
        warn: Callable[[str], None] = lambda m: None,
    ) -> None:
        self.repo = repo
        self.target = os.path.abspath(target)
        self.workers = workers
        self.progress = progress
        self.warn = warn
        self.stats = RestoreStats()
        self._is_root = os.geteuid() == 0
        self._owner = (os.geteuid(), os.getegid())
        self._dirs_needing_chmod: set[int] = set()

    def restore(self, root: bytes, includes: list[bytes] = ()) -> RestoreStats:
        # Files are created with their final permission bits: the umask must not alter them.
        old_umask = os.umask(0)
        try:
            return self._restore(root, includes)
        finally:
            os.umask(old_umask)

    def _restore(self, root: bytes, includes: list[bytes]) -> RestoreStats:
        steps = plan(self.repo, root, list(includes))
        os.makedirs(self.target, exist_ok=True)
        top = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY)
        fds: list[int] = [top]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="restore") as pool:
            ahead = _Lookahead(steps, pool, self.repo)
            try:
                for step in ahead:
                    if step.kind == "dir":
                        fds.append(self._enter_dir(fds[-1], step))
                    elif step.kind == "dir_done":
                        fd = fds.pop()
                        self._set_meta(fd, step.node, is_dir=True)
                        os.close(fd)
                        self.stats.dirs += 1
                    elif step.kind == "file":
                        self._write_file(fds[-1], step, ahead)
                    else:
                        self._make_symlink(fds[-1], step)
            finally:
                for fd in reversed(fds):
                    os.close(fd)
                ahead.cancel()
        return self.stats

    # --- creating things -------------------------------------------------------------------

    def _display(self, step: _Step) -> str:
        return "/" + os.fsdecode(b"/".join(step.path))

    def _enter_dir(self, parent: int, step: _Step) -> int:
        name = step.node.name
        created = True
        try:
            # Writable for us while its contents are restored; the exact mode comes at the end.
            os.mkdir(name, (step.node.mode & 0o777) | 0o700, dir_fd=parent)
        except FileExistsError:
            created = False
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
            if not created or (step.node.mode & 0o700) != 0o700:
                self._dirs_needing_chmod.add(fd)
            return fd
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise DamageError(
                    f"refusing to restore into {self._display(step)}: it exists and is not a "
                    "folder (a symlink there could lead outside the target)"
                ) from None
            raise DedupeError(f"cannot create {self._display(step)}: {exc.strerror}") from None

    def _create_file(self, parent: int, step: _Step) -> int:
        """Create the file exclusively; whatever was there (a file, a symlink) is removed
        first and never written through."""
        name = step.node.name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        # Created with its final permissions (the umask is cleared during a restore), so no
        # fchmod is needed for ordinary modes; the creator's descriptor is writable anyway.
        mode = step.node.mode & 0o777
        for _attempt in range(2):
            try:
                return os.open(name, flags, mode, dir_fd=parent)
            except FileExistsError:
                try:
                    os.unlink(name, dir_fd=parent)
                except IsADirectoryError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EISDIR:
                        break
                    raise DedupeError(
                        f"cannot restore {self._display(step)}: {exc.strerror}"
                    ) from None
        raise DedupeError(f"cannot restore file {self._display(step)}: a folder is there")

    def _write_file(self, parent: int, step: _Step, ahead: _Lookahead) -> None:
        node = step.node
        name = node.name
        fd = self._create_file(parent, step)
        written = 0
        try:
            for _ in node.content:
                try:
                    data = ahead.next_blob()
                except DamageError as exc:
                    raise DamageError(f"cannot restore {self._display(step)}: {exc}") from None
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                written += len(data)
                if written > node.size:
                    raise DamageError(f"{self._display(step)}: content larger than recorded")
            if written != node.size:
                raise DamageError(f"{self._display(step)}: content size does not match")
            self._set_meta(fd, node, is_dir=False)
        except BaseException:
            os.close(fd)
            try:  # never leave a wrong file looking right
                os.unlink(name, dir_fd=parent)
            except OSError:
                pass
            raise
        os.close(fd)
        self.stats.files += 1
        self.stats.bytes_written += written
        if self.progress is not None:
            self.progress(written)

    def _make_symlink(self, parent: int, step: _Step) -> None:
        node = step.node
        try:
            os.unlink(node.name, dir_fd=parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DedupeError(f"cannot restore {self._display(step)}: {exc.strerror}") from None
        os.symlink(node.target, node.name, dir_fd=parent)  # type: ignore[arg-type]
        if self._is_root:
            try:
                os.chown(node.name, node.uid, node.gid, dir_fd=parent, follow_symlinks=False)
            except OSError:
                pass
        try:
            os.utime(
                node.name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=parent, follow_symlinks=False
            )
        except OSError:
            pass
        self.stats.symlinks += 1

    def _set_meta(self, fd: int, node: Node, is_dir: bool) -> None:
        # Only the calls that change something: on a slow file system each one costs.
        if self._is_root and (node.uid, node.gid) != self._owner:
            try:
                os.fchown(fd, node.uid, node.gid)
            except OSError as exc:
                self.warn(f"cannot set owner of {os.fsdecode(node.name)}: {exc.strerror}")
        chown_done = self._is_root and (node.uid, node.gid) != self._owner
        needs = is_dir and fd in self._dirs_needing_chmod
        if node.mode & ~0o777 or chown_done or needs:
            os.fchmod(fd, node.mode)  # chown clears set-id bits; special bits need fchmod
        self._dirs_needing_chmod.discard(fd)
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
