"""Restore: recreate a snapshot's files under a target folder, never outside it.

Every file system call is made relative to an open descriptor of the folder being filled
(`dir_fd`, `O_NOFOLLOW`), and folders are entered with `O_DIRECTORY | O_NOFOLLOW`. A name can
only be one path component (checked when trees are decoded and again here), so neither `..`, an
absolute name, nor a symlink planted earlier in the same restore can lead a write outside the
target.

Nothing is ever half-written under a real name: every file (and symlink) is made under a
temporary name beside its place and renamed over it once complete and verified, so a restore
killed at any moment leaves each existing file either as it was or wholly replaced. A file that
replaces an existing one is flushed to disk before the rename (a power cut then cannot leave an
empty file where a good one was).

What is already in the target is kept or replaced as `--overwrite` says
(`dedupe.restore.existing`); the decision is made before a file's blobs are requested, so a file
the disk already holds is never read from the repository. With `verify`, each file written is
read back through its final name and compared with the snapshot's content ids.

Blob reads are verified. Damage costs only what it touches: a file whose content fails
verification is left out, a folder whose listing fails loses only its subtree, and the restore
goes on; each is listed in `RestoreStats` and reported through `warn`. Decryption and
decompression run in worker threads ahead of the writer; each file is written sequentially.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from dedupe.errors import DamageError, DedupeError
from dedupe.model.tree import Node
from dedupe.repo.index import Location
from dedupe.repo.repository import Repository
from dedupe.restore.existing import (
    CONFLICT,
    CREATE,
    DEFAULT_MODE,
    MODES,
    OVERWRITE,
    SKIP,
    UNCHANGED,
    Decision,
    TargetView,
    mismatch,
    open_existing,
)
from dedupe.restore.outcome import RestoreBlocked, RestoreIncomplete, RestoreStats, damage_summary
from dedupe.restore.steps import Excluded, Step, plan

__all__ = [
    "RestoreBlocked",
    "RestoreIncomplete",
    "RestoreStats",
    "Restorer",
    "damage_summary",
    "plan",
]

Progress = Callable[[int], None]
_BlobResult = bytes | DamageError | list[bytes | DamageError]  # one blob, or a run of them

PREFETCH_BYTES = 64 << 20
_WRITES = (CREATE, OVERWRITE)


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

    def __init__(
        self,
        steps: Iterator[Step],
        view: TargetView,
        pool: ThreadPoolExecutor,
        repo: Repository,
    ) -> None:
        self._steps = steps
        self._view = view
        self._pool = pool
        self._repo = repo
        self._pending: deque[tuple[Step, Decision]] = deque()
        self._futures: deque[tuple[Future[_BlobResult], int]] = deque()
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
            # Decided before any blob is requested: a file kept as it is costs no repository read.
            decision = self._view.see(step.kind, step.node)
            self._pending.append((step, decision))
            if step.kind == "file" and decision.action in _WRITES:
                queue.extend(step.node.content)  # type: ignore[union-attr]
        self._flush_run()

    def __iter__(self) -> Iterator[tuple[Step, Decision]]:
        while True:
            if not self._pending:
                self._fill()
                if not self._pending:
                    return
            yield self._pending.popleft()
            if self._ahead < PREFETCH_BYTES // 2:
                self._fill()

    def skip_blobs(self, count: int) -> None:
        """Pass over the rest of a file that will not be written (damaged), so the next file
        still gets exactly its own blobs."""
        for _ in range(count):
            try:
                self.next_blob()
            except DamageError:
                pass

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
    """Restores one snapshot (or part of it) under `target`.

    `overwrite` is one of `existing.MODES` (what to do with a file already there); `excluded`
    leaves entries out (see `steps.Excluded`); `verify` reads back every file written, and
    compares by content the ones it keeps as unchanged.
    """

    def __init__(
        self,
        repo: Repository,
        target: str,
        workers: int = 2,
        progress: Progress | None = None,
        warn: Callable[[str], None] = lambda m: None,
        *,
        overwrite: str = DEFAULT_MODE,
        excluded: Excluded | None = None,
        verify: bool = False,
    ) -> None:
        if overwrite not in MODES:
            raise ValueError(f"overwrite must be one of {', '.join(MODES)}")
        self.repo = repo
        self.target = os.path.abspath(target)
        self.workers = workers
        self.progress = progress
        self.warn = warn
        self.overwrite = overwrite
        self.excluded = excluded
        self.verify = verify
        self.stats = RestoreStats()
        self._is_root = os.geteuid() == 0
        self._owner = (os.geteuid(), os.getegid())
        self._dirs_needing_chmod: set[int] = set()

    def restore(self, root: bytes, includes: Sequence[bytes] = ()) -> RestoreStats:
        # Files are created with their final permission bits: the umask must not alter them.
        old_umask = os.umask(0)
        try:
            stats = self._restore(root, includes)
        finally:
            os.umask(old_umask)
        if stats.damaged:
            raise RestoreIncomplete(stats)
        if stats.blocked:
            raise RestoreBlocked(stats)
        return stats

    def _restore(self, root: bytes, includes: Sequence[bytes]) -> RestoreStats:
        steps = plan(self.repo, root, list(includes), self.excluded)
        os.makedirs(self.target, exist_ok=True)
        top = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY)
        fds: list[int] = [top]
        view = TargetView(self.repo, self.target, self.overwrite, exact=self.verify)
        with view, ThreadPoolExecutor(self.workers, thread_name_prefix="restore") as pool:
            ahead = _Lookahead(steps, view, pool, self.repo)
            try:
                for step, decision in ahead:
                    if step.kind == "dir":
                        fds.append(self._enter_dir(fds[-1], step))
                    elif step.kind == "dir_done":
                        fd = fds.pop()
                        self._set_meta(fd, step.node, is_dir=True)  # type: ignore[arg-type]
                        os.close(fd)
                        self.stats.dirs += 1
                    elif step.kind == "damaged":
                        self._damaged_folder(step)
                    elif decision.action not in _WRITES:
                        self._leave(fds[-1], step, decision)
                    elif step.kind == "file":
                        self._write_file(fds[-1], step, ahead, decision)
                    else:
                        self._make_symlink(fds[-1], step, decision)
            finally:
                for fd in reversed(fds):
                    os.close(fd)
                ahead.cancel()
        return self.stats

    def _leave(self, parent: int, step: Step, decision: Decision) -> None:
        """A file or symlink the restore does not write: already right, or kept by the mode."""
        node = step.node
        assert node is not None
        if decision.action == CONFLICT:  # costs that file only: named, and exit 1 at the end
            where = self._display(step)
            self.stats.blocked.append((where, decision.reason))
            self.warn(f"cannot restore {where}: {decision.reason}")
            return
        assert decision.action == SKIP
        if decision.reason == UNCHANGED:
            # Its content is the snapshot's; its permissions and times become the snapshot's
            # too (as restic does), so the next if-changed run takes the shortcut.
            if step.kind == "file":
                fd = open_existing(parent, node.name)
                if fd is not None:
                    try:
                        self._set_meta(fd, node, is_dir=False, existing=True)
                    except OSError as exc:  # someone else's file: its content is right anyway
                        self.warn(
                            f"cannot set permissions or time of {self._display(step)}: "
                            f"{exc.strerror}"
                        )
                    finally:
                        os.close(fd)
            self.stats.unchanged += 1
            if self.verify:  # with verify, "unchanged" was decided by comparing the content
                self.stats.verified += 1
        else:
            self.stats.kept += 1
        if self.progress is not None and step.kind == "file":
            self.progress(node.size)

    def _check(self, parent: int, step: Step) -> None:
        """--verify: read the entry back through its final name and compare it with the
        snapshot; a difference is listed and makes the restore end with exit 14."""
        assert step.node is not None
        try:
            why = mismatch(self.repo, parent, step.node)
        except DamageError as exc:
            why = f"it could not be compared: {exc}"
        if why is None:
            self.stats.verified += 1
            return
        where = self._display(step)
        self.stats.mismatched.append((where, why))
        self.warn(f"{where} does not match the backup after it was restored: {why}")

    # --- creating things -------------------------------------------------------------------

    def _display(self, step: Step) -> str:
        return step.display()

    def _damaged_folder(self, step: Step) -> None:
        where = self._display(step)
        why = f"its folder listing is damaged, so nothing in it was restored ({step.why})"
        self.stats.damaged_folders.append((where, why))
        self.warn(f"cannot restore {where}: {why}")

    def _enter_dir(self, parent: int, step: Step) -> int:
        assert step.node is not None
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

    def _create_temp(self, parent: int, step: Step) -> tuple[int, str]:
        """A new file under a temporary name beside the final one: (descriptor, name). The
        name is short and fixed in length, so it fits wherever the final name fits."""
        assert step.node is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        # Created with its final permissions (the umask is cleared during a restore), so no
        # fchmod is needed for ordinary modes; the creator's descriptor is writable anyway.
        mode = step.node.mode & 0o777
        while True:
            temp = f".dedupe-restore-{secrets.token_hex(6)}"
            try:
                return os.open(temp, flags, mode, dir_fd=parent), temp
            except FileExistsError:
                continue  # a name taken (by anyone): another one
            except OSError as exc:
                raise DedupeError(f"cannot restore {self._display(step)}: {exc.strerror}") from None

    def _put_in_place(self, parent: int, temp: str, step: Step) -> None:
        """Rename the complete file over its final name. Whatever was there (a file, a
        symlink) is replaced, never written through; a folder there is refused."""
        assert step.node is not None
        try:
            os.rename(temp, step.node.name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError as exc:
            _remove(temp, parent)
            if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise DedupeError(
                    f"cannot restore file {self._display(step)}: a folder is there"
                ) from None
            raise DedupeError(f"cannot restore {self._display(step)}: {exc.strerror}") from None

    def _write_file(self, parent: int, step: Step, ahead: _Lookahead, decision: Decision) -> None:
        node = step.node
        assert node is not None
        fd, temp = self._create_temp(parent, step)
        written = taken = 0
        damage = None
        try:
            for _ in node.content:
                taken += 1
                try:
                    data = ahead.next_blob()
                except DamageError as exc:
                    damage = str(exc)
                    break
                written += len(data)
                if written > node.size:
                    damage = "its content is larger than its recorded size"
                    break
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            else:
                if written != node.size:
                    damage = (
                        f"its content size ({written} bytes) does not match the recorded size "
                        f"({node.size} bytes)"
                    )
            if damage is None:
                self._set_meta(fd, node, is_dir=False)
                if decision.action == OVERWRITE:
                    os.fsync(fd)  # on disk before it takes the place of a good file
        except BaseException:
            os.close(fd)
            _remove(temp, parent)  # never leave a partial file behind
            raise
        os.close(fd)
        if damage is not None:
            _remove(temp, parent)
            ahead.skip_blobs(len(node.content) - taken)
            where = self._display(step)
            self.stats.damaged_files.append((where, damage))
            self.warn(f"cannot restore {where}: the backup data is damaged: {damage}")
            return
        self._put_in_place(parent, temp, step)
        self._count_written(decision)
        self.stats.files += 1
        self.stats.bytes_written += written
        if self.verify:
            self._check(parent, step)
        if self.progress is not None:
            self.progress(written)

    def _count_written(self, decision: Decision) -> None:
        if decision.action == OVERWRITE:
            self.stats.overwritten += 1
        else:
            self.stats.created += 1

    def _make_symlink(self, parent: int, step: Step, decision: Decision) -> None:
        """Made under a temporary name and renamed into place, like a file: whatever had the
        name is replaced in one step, never removed first."""
        node = step.node
        assert node is not None
        while True:
            temp = f".dedupe-restore-{secrets.token_hex(6)}"
            try:
                os.symlink(node.target, temp, dir_fd=parent)  # type: ignore[arg-type]
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise DedupeError(f"cannot restore {self._display(step)}: {exc.strerror}") from None
        if self._is_root:
            try:
                os.chown(temp, node.uid, node.gid, dir_fd=parent, follow_symlinks=False)
            except OSError:
                pass
        try:
            os.utime(temp, ns=(node.mtime_ns, node.mtime_ns), dir_fd=parent, follow_symlinks=False)
        except OSError:
            pass
        self._put_in_place(parent, temp, step)
        self._count_written(decision)
        self.stats.symlinks += 1
        if self.verify:
            self._check(parent, step)

    def _set_meta(self, fd: int, node: Node, is_dir: bool, existing: bool = False) -> None:
        """The snapshot's owner, permissions and modification time on `fd`. `existing`: a
        file the restore did not create (kept as unchanged), whose owner and permissions may
        be anything."""
        # Only the calls that change something: on a slow file system each one costs.
        if self._is_root and (existing or (node.uid, node.gid) != self._owner):
            try:
                os.fchown(fd, node.uid, node.gid)
            except OSError as exc:
                self.warn(f"cannot set owner of {os.fsdecode(node.name)}: {exc.strerror}")
        chown_done = self._is_root and (existing or (node.uid, node.gid) != self._owner)
        needs = existing or (is_dir and fd in self._dirs_needing_chmod)
        if node.mode & ~0o777 or chown_done or needs:
            os.fchmod(fd, node.mode)  # chown clears set-id bits; special bits need fchmod
        self._dirs_needing_chmod.discard(fd)
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))


def _remove(name: str, parent: int) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except OSError:
        pass
