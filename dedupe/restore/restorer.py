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
goes on; each is listed in `RestoreStats` and reported through `warn`. Reading, decryption,
decompression, verification and the writes themselves run in the worker pool
(`dedupe.restore.pipeline`: each blob is written at its offset with pwrite); this thread walks,
decides, creates each file under its temporary name and finishes the files in walk order.
A replaced file is flushed once, when it is complete (never per blob).
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from dedupe import platform
from dedupe.errors import DamageError, DedupeError
from dedupe.model.tree import Node
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
from dedupe.restore.pipeline import PendingFile, WritePipeline
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

_WRITES = (CREATE, OVERWRITE)


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
        self._temp_counter = secrets.randbits(48)
        # Permission bits the umask takes from new files and folders; those get an fchmod at
        # the end. The process's umask is never changed: it is process-wide, and the web page
        # restores in a thread beside others (clearing it there left it cleared for them).
        umask = platform.current_umask()
        self._masked = 0o777 if umask is None else umask

    def restore(self, root: bytes, includes: Sequence[bytes] = ()) -> RestoreStats:
        stats = self._restore(root, includes)
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
        # Folders whose contents are still being written: their times are set (and their
        # descriptors closed) once the files in them are finished.
        self._deferred: set[int] = set()
        view = TargetView(self.repo, self.target, self.overwrite, exact=self.verify)
        with view, ThreadPoolExecutor(self.workers, thread_name_prefix="restore") as pool:
            pipe = WritePipeline(self.repo, pool, self._finish_file)
            try:
                for step in steps:
                    # Decided before any blob is requested: a file kept as it is costs no read.
                    decision = view.see(step.kind, step.node)
                    if step.kind == "dir":
                        fds.append(self._enter_dir(fds[-1], step))
                    elif step.kind == "dir_done":
                        fd = fds.pop()
                        self._deferred.add(fd)
                        pipe.add_action(partial(self._dir_done, fd, step.node))  # type: ignore[arg-type]
                    elif step.kind == "damaged":
                        self._damaged_folder(step)
                    elif decision.action not in _WRITES:
                        self._leave(fds[-1], step, decision)
                    elif step.kind == "file":
                        self._start_file(fds[-1], step, decision, pipe)
                    else:
                        self._make_symlink(fds[-1], step, decision)
                pipe.drain(block=True)
            finally:
                for file in pipe.abandon():  # only after an error: nothing is left otherwise
                    os.close(file.fd)
                    _remove(file.temp, file.parent)
                for fd in [*self._deferred, *reversed(fds)]:
                    os.close(fd)
                self._deferred.clear()
        return self.stats

    def _dir_done(self, fd: int, node: Node) -> None:
        self._deferred.discard(fd)
        try:
            self._set_meta(fd, node, is_dir=True)
        finally:
            os.close(fd)
        self.stats.dirs += 1

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
            if not created or (step.node.mode & 0o700) != 0o700 or step.node.mode & self._masked:
                self._dirs_needing_chmod.add(fd)
            return fd
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise DamageError(
                    f"refusing to restore into {self._display(step)}: it exists and is not a "
                    "folder (a symlink there could lead outside the target)"
                ) from None
            raise DedupeError(f"cannot create {self._display(step)}: {exc.strerror}") from None

    def _temp_name(self) -> str:
        """`.dedupe-restore-` and 12 hex digits: a random start per restore, then counted (a
        random draw per file is a system call per file); O_EXCL still decides."""
        self._temp_counter = (self._temp_counter + 1) & 0xFFFF_FFFF_FFFF
        return f".dedupe-restore-{self._temp_counter:012x}"

    def _create_temp(self, parent: int, step: Step) -> tuple[int, str]:
        """A new file under a temporary name beside the final one: (descriptor, name). The
        name is short and fixed in length, so it fits wherever the final name fits."""
        assert step.node is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        # Created with its final permissions where the umask leaves them whole (`_set_meta`
        # fixes the rest); the creator's descriptor is writable whatever the mode.
        mode = step.node.mode & 0o777
        while True:
            temp = self._temp_name()
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

    def _start_file(self, parent: int, step: Step, decision: Decision, pipe: WritePipeline) -> None:
        """Create the file under its temporary name and hand its blobs to the pipeline; it is
        finished (`_finish_file`) once they are all written."""
        node = step.node
        assert node is not None
        fd, temp = self._create_temp(parent, step)
        pipe.add_file(PendingFile(fd, temp, parent, (step, decision)), node.content, node.size)

    def _finish_file(self, file: PendingFile) -> None:
        """Every blob of the file is written (or found damaged): metadata, flush if it
        replaces a file, rename into place, or removal if anything was damaged."""
        step: Step
        decision: Decision
        step, decision = file.payload  # type: ignore[misc]
        node = step.node
        assert node is not None
        parent, fd, temp = file.parent, file.fd, file.temp
        damage = file.first_damage()
        try:
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
            where = self._display(step)
            self.stats.damaged_files.append((where, damage))
            self.warn(f"cannot restore {where}: the backup data is damaged: {damage}")
            return
        self._put_in_place(parent, temp, step)
        self._count_written(decision)
        self.stats.files += 1
        self.stats.bytes_written += file.written
        if self.verify:
            self._check(parent, step)
        if self.progress is not None:
            self.progress(file.written)

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
            temp = self._temp_name()
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
        needs = (
            existing
            or (is_dir and fd in self._dirs_needing_chmod)
            or (not is_dir and node.mode & self._masked)
        )
        if node.mode & ~0o777 or chown_done or needs:
            os.fchmod(fd, node.mode)  # chown clears set-id bits; special bits need fchmod
        self._dirs_needing_chmod.discard(fd)
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))


def _remove(name: str, parent: int) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except OSError:
        pass
