"""The read-only filesystem a mount shows: path -> attributes, listings, symlinks and file bytes.

The operations follow the high-level libfuse interface (as `mfusepy` calls them: paths as text
decoded with surrogateescape, so names that are not UTF-8 survive the round trip), but the class
imports no FUSE binding; `dedupe.mount.session` hands it to one.

What it guarantees:
- nothing is writable: every changing operation fails with EROFS (the kernel mount is read-only
  too, so most never get here);
- folders inside a snapshot are read when first visited (`TreeMemo`, by tree id); before a
  snapshot's first folder is shown, its trees are judged as `dedupe ls` judges them
  (`treewalk.count_entries`: hostile trees that name each other, or nest past `MAX_DEPTH`, are
  refused with EIO and one message; a tree that cannot be read counts as empty there and gives
  EIO when that folder is opened);
- file reads fetch only the blobs their range touches, through a small `BlobCache`;
- damage (a blob or tree that fails verification, a missing pack) gives EIO to the reader and a
  message through `report`, once per place; an unexpected error does the same: the mount never
  dies of one bad file.
Times, modes and owners come from the snapshot's entries; the folders the mount makes itself
(the top level, a snapshot's root) belong to the mounting user, are read-only, and carry the
snapshot's time (the newest snapshot's for the top level).
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from dedupe.errors import DamageError
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, FILE, Node
from dedupe.mount import layout as layout_mod
from dedupe.mount.cache import BLOB_CACHE_BYTES, BlobCache, FileLayout, TreeMemo
from dedupe.repo import treewalk
from dedupe.repo.repository import Repository

Report = Callable[[str], None]
_MAX_REPORTS = 1000  # distinct messages remembered (each is said once)

F = TypeVar("F", bound=Callable[..., Any])


def _fs_name(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def _raw_name(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass(frozen=True)
class _Virtual:
    """A folder or symlink the mount makes itself."""

    names: tuple[str, ...] = ()
    target: str | None = None
    mtime_ns: int = 0


@dataclass(frozen=True)
class _InSnapshot:
    """A snapshot's root (node None, tree `tree_id`) or an entry below it."""

    snapshot: str  # its folder name under snapshots/
    path: bytes  # below the snapshot's root, b"" for the root itself
    node: Node | None
    tree_id: bytes | None
    mtime_ns: int


def _guarded(op: F) -> F:
    """Turn damage and unexpected errors into EIO and a message, never a crash or a traceback."""

    @functools.wraps(op)
    def run(self: SnapshotFS, path: str, *args: Any) -> Any:
        try:
            return op(self, path, *args)
        except OSError:
            raise
        except DamageError as exc:
            self.report_once(f"{path.lstrip('/')}: the backup data is damaged ({exc})")
            raise _fail(errno.EIO) from None
        except Exception as exc:  # a bug must cost one request, not the mount
            self.report_once(f"{path.lstrip('/')}: unexpected error ({type(exc).__name__}: {exc})")
            raise _fail(errno.EIO) from None

    return run  # type: ignore[return-value]


def _read_only(self: SnapshotFS, path: str, *args: Any) -> None:
    raise _fail(errno.EROFS)


class SnapshotFS:
    """The operations of the mount over one open repository and its snapshots."""

    use_ns = True  # times are given in nanoseconds (mfusepy)

    def __init__(
        self,
        repo: Repository,
        snapshots: list[Snapshot],
        report: Report,
        on_mounted: Callable[[], None] = lambda: None,
        blob_cache_bytes: int = BLOB_CACHE_BYTES,
    ) -> None:
        self.repo = repo
        self.layout = layout_mod.build(snapshots)
        self._report = report
        self._on_mounted = on_mounted
        self.mounted = False
        self._reported: set[str] = set()
        self._uid, self._gid = os.getuid(), os.getgid()
        self._tree_lock = threading.Lock()  # tree reads share treewalk's (unlocked) tree cache
        self.trees = TreeMemo(self._load_tree)
        self.blobs = BlobCache(repo.read_blob, blob_cache_bytes)
        self._judged: dict[bytes, str | None] = {}  # root tree -> why refused (None: fine)
        self._files: dict[int, tuple[str, FileLayout]] = {}
        self._handles = itertools.count(1)
        self._lock = threading.Lock()
        newest = max((s.time for s in snapshots), default=None)
        self._top_mtime = int(newest.timestamp() * 1e9) if newest else 0

    # --- messages -------------------------------------------------------------------------

    def report_once(self, message: str) -> None:
        with self._lock:
            if message in self._reported:
                return
            if len(self._reported) >= _MAX_REPORTS:
                self._reported.clear()
            self._reported.add(message)
        self._report(message)

    # --- resolving paths --------------------------------------------------------------------

    def _load_tree(self, tree_id: bytes) -> list[Node]:
        with self._tree_lock:
            return treewalk.load_tree(self.repo, tree_id)

    def _judge(self, name: str, snap: Snapshot) -> None:
        """Refuse (EIO) a snapshot whose trees are hostile, as `dedupe ls` does; judged once."""
        with self._lock:
            known = snap.tree in self._judged
            refused = self._judged.get(snap.tree)
        if not known:
            try:
                with self._tree_lock:
                    treewalk.count_entries(self.repo, snap.tree, skip_damaged=True)
                refused = None
            except DamageError as exc:  # FormatError and TreesTooDeep are kinds of it
                refused = str(exc)
            with self._lock:
                self._judged[snap.tree] = refused
        if refused is not None:
            self.report_once(
                f"snapshots/{name} is not shown: its folder structure is damaged or was "
                f"tampered with ({refused}). Run 'dedupe check'; restore from another copy."
            )
            raise _fail(errno.EIO)

    def _resolve(self, path: str) -> _Virtual | _InSnapshot:
        parts = [p for p in path.split("/") if p]
        lay = self.layout
        top = self._top_mtime
        if not parts:
            names = [layout_mod.SNAPSHOTS, layout_mod.TAGS, layout_mod.SOURCES]
            if lay.latest is not None:
                names.insert(1, layout_mod.LATEST)
            return _Virtual(tuple(names), mtime_ns=top)
        head, rest = parts[0], parts[1:]
        if head == layout_mod.LATEST and lay.latest is not None and not rest:
            target = f"{layout_mod.SNAPSHOTS}/{lay.latest}"
            return _Virtual(target=target, mtime_ns=self._snapshot_mtime(lay.latest))
        if head in (layout_mod.TAGS, layout_mod.SOURCES):
            groups = lay.tags if head == layout_mod.TAGS else lay.sources
            if not rest:
                return _Virtual(tuple(groups), mtime_ns=top)
            group = groups.get(rest[0])
            if group is None:
                raise _fail(errno.ENOENT)
            if len(rest) == 1:
                return _Virtual(tuple(group.links), mtime_ns=top)
            link = group.links.get(rest[1])
            if link is None or len(rest) > 2:
                raise _fail(errno.ENOENT if link is None else errno.ENOTDIR)
            return _Virtual(target=link, mtime_ns=self._snapshot_mtime(link.split("/")[-1]))
        if head != layout_mod.SNAPSHOTS:
            raise _fail(errno.ENOENT)
        if not rest:
            return _Virtual(tuple(lay.snapshots), mtime_ns=top)
        name = rest[0]
        snap = lay.snapshots.get(name)
        if snap is None:
            raise _fail(errno.ENOENT)
        mtime = self._snapshot_mtime(name)
        if len(rest) == 1:
            return _InSnapshot(name, b"", None, snap.tree, mtime)
        self._judge(name, snap)
        return self._walk(name, snap, [_raw_name(p) for p in rest[1:]])

    def _snapshot_mtime(self, name: str) -> int:
        snap = self.layout.snapshots.get(name)
        return int(snap.time.timestamp() * 1e9) if snap is not None else self._top_mtime

    def _walk(self, name: str, snap: Snapshot, parts: list[bytes]) -> _InSnapshot:
        if len(parts) > treewalk.MAX_DEPTH + 1:
            raise _fail(errno.ENOENT)  # deeper than any tree the judge let through
        tree_id: bytes | None = snap.tree
        node: Node | None = None
        for part in parts:
            if tree_id is None:
                raise _fail(errno.ENOTDIR)
            node = self._folder(name, parts, tree_id).get(part)
            if node is None:
                raise _fail(errno.ENOENT)
            tree_id = node.subtree if node.type == DIR else None
        assert node is not None
        return _InSnapshot(name, b"/".join(parts), node, tree_id, node.mtime_ns)

    def _folder(self, name: str, parts: list[bytes], tree_id: bytes) -> dict[bytes, Node]:
        try:
            return self.trees.get(tree_id)
        except DamageError as exc:
            self.report_once(
                f"cannot list a folder on the way to snapshots/{name}/"
                f"{os.fsdecode(b'/'.join(parts))}: the backup data is damaged, so its contents "
                f"cannot be shown. Get it from another copy (a rotating drive or the off-site "
                f"copy) and run 'dedupe check --read-data'. ({exc})"
            )
            raise _fail(errno.EIO) from None

    # --- the operations (called by libfuse through mfusepy) ---------------------------------

    def init(self, _path: str) -> None:
        """Called by libfuse once the kernel mount stands."""
        self.mounted = True
        self._on_mounted()

    @_guarded
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        found = self._resolve(path)
        mtime = found.mtime_ns
        attrs: dict[str, Any] = {
            "st_mtime": mtime,
            "st_atime": mtime,
            "st_ctime": mtime,
            "st_nlink": 1,
            "st_uid": self._uid,
            "st_gid": self._gid,
        }
        node = found.node if isinstance(found, _InSnapshot) else None
        if isinstance(found, _Virtual):
            if found.target is not None:
                attrs["st_mode"] = stat.S_IFLNK | 0o777
                attrs["st_size"] = len(_raw_name(found.target))
            else:
                attrs["st_mode"] = stat.S_IFDIR | 0o555
        elif node is None:
            attrs["st_mode"] = stat.S_IFDIR | 0o555  # a snapshot's root
        else:
            kind = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR}.get(node.type, stat.S_IFLNK)
            attrs["st_mode"] = kind | node.mode
            attrs["st_uid"], attrs["st_gid"] = node.uid, node.gid
            if node.type == FILE:
                attrs["st_size"] = node.size
                attrs["st_blocks"] = (node.size + 511) // 512
            elif node.target is not None:
                attrs["st_size"] = len(node.target)
        return attrs

    @_guarded
    def readdir(self, path: str, fh: int) -> Iterator[str]:
        found = self._resolve(path)
        if isinstance(found, _Virtual):
            if found.target is not None:
                raise _fail(errno.ENOTDIR)
            names = list(found.names)
        else:
            if found.tree_id is None:
                raise _fail(errno.ENOTDIR)
            if found.node is None:  # a snapshot's root: judge it before showing anything
                snap = self.layout.snapshots[found.snapshot]
                self._judge(found.snapshot, snap)
            parts = found.path.split(b"/") if found.path else []
            names = [_fs_name(n) for n in self._folder(found.snapshot, parts, found.tree_id)]
        return iter([".", "..", *names])

    @_guarded
    def readlink(self, path: str) -> str:
        found = self._resolve(path)
        if isinstance(found, _Virtual) and found.target is not None:
            return found.target
        if isinstance(found, _InSnapshot) and found.node is not None and found.node.target:
            return _fs_name(found.node.target)
        raise _fail(errno.EINVAL)

    @_guarded
    def open(self, path: str, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_CREAT):
            raise _fail(errno.EROFS)
        found = self._resolve(path)
        if not isinstance(found, _InSnapshot) or found.node is None:
            raise _fail(errno.EISDIR)
        node = found.node
        if node.type != FILE:
            raise _fail(errno.EISDIR if node.type == DIR else errno.ELOOP)
        where = f"snapshots/{found.snapshot}/{os.fsdecode(found.path)}"
        try:
            sizes = [self.repo.locate(blob_id).raw_length for blob_id in node.content]
            file_layout = FileLayout(node.content, sizes, node.size)
        except DamageError as exc:
            self.report_once(self._damaged_file(where, exc))
            raise _fail(errno.EIO) from None
        with self._lock:
            handle = next(self._handles)
            self._files[handle] = (where, file_layout)
        return handle

    @_guarded
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._lock:
            opened = self._files.get(fh)
        if opened is None:
            raise _fail(errno.EBADF)
        where, file_layout = opened
        try:
            data = file_layout.read(offset, size, self.blobs.get)
        except DamageError as exc:
            self.report_once(self._damaged_file(where, exc))
            raise _fail(errno.EIO) from None
        # A sequential reader next wants the blob that follows the one this read ended in.
        following = file_layout.blob_after(offset + len(data) - 1)
        if following is not None:
            self.blobs.prefetch(following)
        return data

    def destroy(self, _path: str) -> None:
        """Called by libfuse at unmount."""
        self.blobs.close()

    def release(self, path: str, fh: int) -> None:
        with self._lock:
            self._files.pop(fh, None)

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    @staticmethod
    def _damaged_file(where: str, exc: DamageError) -> str:
        return (
            f"cannot read {where}: the backup data is damaged, so the program reading it got an "
            f"input/output error. Get this file from another copy (a rotating drive or the "
            f"off-site copy) and run 'dedupe check --read-data'. ({exc})"
        )

    # --- nothing is writable ----------------------------------------------------------------

    mkdir = rmdir = unlink = rename = symlink = link = mknod = _read_only
    chmod = chown = truncate = write = create = utimens = _read_only
    setxattr = removexattr = _read_only
