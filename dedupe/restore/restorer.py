"""Restore: recreate a snapshot's files under a target folder, never outside it.

Every file system call is made relative to an open descriptor of the folder being filled
(`dir_fd`, `O_NOFOLLOW`), and folders are entered with `O_DIRECTORY | O_NOFOLLOW`. A name can
only be one path component (checked when trees are decoded and again here), so neither `..`, an
absolute name, nor a symlink planted earlier in the same restore can lead a write outside the
target. Blob reads are verified. Damage costs only what it touches: a file whose content fails
verification is left out (never left under its name: every file is written under a temporary
name and renamed into place once complete and verified), a folder whose listing fails loses only
its subtree, and the restore goes on; each is listed in `RestoreStats` and reported through
`warn`. Decryption and decompression run in worker threads ahead of the writer; each file is
written sequentially.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from dedupe.errors import DamageError, DedupeError, FormatError
from dedupe.model.tree import DIR, FILE, Node, valid_name
from dedupe.repo.index import Location
from dedupe.repo.repository import Repository
from dedupe.repo.treewalk import DAMAGED, ENTRY, TREE, count_entries, load_tree, traverse

Progress = Callable[[int], None]
_BlobResult = bytes | DamageError | list[bytes | DamageError]  # one blob, or a run of them

PREFETCH_BYTES = 64 << 20


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes_written: int = 0
    warnings: list[str] = field(default_factory=list)
    # (path, why) of files left out because their stored content is damaged
    damaged_files: list[tuple[str, str]] = field(default_factory=list)
    # (path, why) of folders whose listing is damaged: nothing below them was restored
    damaged_folders: list[tuple[str, str]] = field(default_factory=list)


class RestoreIncomplete(DamageError):
    """Raised at the end of a restore that met damage: everything intact was restored, and
    `stats` lists what was not (its message says so, for the user)."""

    def __init__(self, stats: RestoreStats) -> None:
        super().__init__(damage_summary(stats))
        self.stats = stats


def damage_summary(stats: RestoreStats) -> str:
    """What a restore that met damage says last: how much came back, what did not, what next.
    (Each file and folder was already named on stderr, with the technical reason.)"""
    lost = len(stats.damaged_files)
    parts = [
        f"restored {stats.files} of {stats.files + lost} files"
        + ("" if not stats.damaged_folders else " that could be listed")
    ]
    if lost:
        names = ", ".join(path for path, _why in stats.damaged_files[:10])
        more = f" and {lost - 10} more" if lost > 10 else ""
        parts.append(
            f"{lost} could not be restored because the backup data is damaged: {names}{more}"
        )
    if stats.damaged_folders:
        folders = len(stats.damaged_folders)
        names = ", ".join(path for path, _why in stats.damaged_folders[:10])
        more = f" and {folders - 10} more" if folders > 10 else ""
        parts.append(
            f"{folders} folder(s) could not be read, so nothing in them was restored: {names}{more}"
        )
    return (
        "; ".join(parts)
        + ". Everything else was restored intact. Restore the missing files from another copy "
        "(a rotating drive or the off-site copy), and run 'dedupe check --read-data' to find "
        "all damage in this repository."
    )


class _Step(NamedTuple):
    """One thing to create: `path` is the list of components below the target. A "damaged"
    step stands for a folder whose listing could not be read (`node` is None, `why` says why).
    (A tuple, not a dataclass: one is made per entry, and a restore of small files feels it.)"""

    kind: str
    path: tuple[bytes, ...]
    node: Node | None
    why: str = ""


_new_step = tuple.__new__


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
    count_entries(repo, root, skip_damaged=True)
    return _steps(repo, root, inc_parts)


def _steps(repo: Repository, root: bytes, inc_parts: list[tuple[bytes, ...]]) -> Iterator[_Step]:
    visits = traverse(
        partial(load_tree, repo),
        [root],
        descend=(lambda path, _node: _selected(path, inc_parts)[1]) if inc_parts else None,
        report_damage=True,  # only that folder's subtree is lost
    )
    for kind, path, node, _tree_id, _nodes, _depth, error, folder in visits:
        if kind == ENTRY:
            assert node is not None
            if not valid_name(node.name):  # decode_tree checks too; never trust one layer
                raise FormatError(f"invalid name {node.name!r} in snapshot")
            if node.type != DIR and (not inc_parts or _selected(path, inc_parts)[0]):
                kind = "file" if node.type == FILE else "symlink"
                yield _new_step(_Step, (kind, path, node, ""))
        elif kind == TREE or kind == DAMAGED:
            if folder is not None:  # entering a folder (selected, or on the way to one)
                yield _Step("dir", path, folder)
            if kind == DAMAGED:
                yield _Step("damaged", path, None, str(error))
        elif folder is not None:  # LEAVE
            yield _Step("dir_done", path, folder)


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
            self._pending.append(step)
            if step.kind == "file":
                queue.extend(step.node.content)  # type: ignore[union-attr]
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

    def restore(self, root: bytes, includes: Sequence[bytes] = ()) -> RestoreStats:
        # Files are created with their final permission bits: the umask must not alter them.
        old_umask = os.umask(0)
        try:
            stats = self._restore(root, includes)
        finally:
            os.umask(old_umask)
        if stats.damaged_files or stats.damaged_folders:
            raise RestoreIncomplete(stats)
        return stats

    def _restore(self, root: bytes, includes: Sequence[bytes]) -> RestoreStats:
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
                        self._set_meta(fd, step.node, is_dir=True)  # type: ignore[arg-type]
                        os.close(fd)
                        self.stats.dirs += 1
                    elif step.kind == "file":
                        self._write_file(fds[-1], step, ahead)
                    elif step.kind == "damaged":
                        self._damaged_folder(step)
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

    def _damaged_folder(self, step: _Step) -> None:
        where = self._display(step)
        why = f"its folder listing is damaged, so nothing in it was restored ({step.why})"
        self.stats.damaged_folders.append((where, why))
        self.warn(f"cannot restore {where}: {why}")

    def _enter_dir(self, parent: int, step: _Step) -> int:
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

    def _create_temp(self, parent: int, step: _Step) -> tuple[int, str]:
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

    def _put_in_place(self, parent: int, temp: str, step: _Step) -> None:
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

    def _write_file(self, parent: int, step: _Step, ahead: _Lookahead) -> None:
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
        self.stats.files += 1
        self.stats.bytes_written += written
        if self.progress is not None:
            self.progress(written)

    def _make_symlink(self, parent: int, step: _Step) -> None:
        node = step.node
        assert node is not None
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


def _remove(name: str, parent: int) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except OSError:
        pass
