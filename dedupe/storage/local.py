"""Local-disk backend: objects are files under a root folder.

Writes go to a hidden temporary name in the same folder, are fsynced, renamed over the final
name, and the folder is fsynced, so an object is either wholly present or absent after a crash.
ENOSPC is mapped to `OutOfSpace` and the temporary file is removed.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat as stat_mod
import threading
from collections import OrderedDict
from collections.abc import Iterator

from dedupe.errors import ObjectExists, ObjectNotFound, OutOfSpace, StorageError
from dedupe.storage.base import ObjectInfo, validate_name

TEMP_PREFIX = ".tmp-"


def _os_error(exc: OSError, what: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutOfSpace(f"out of disk space while {what}")
    if exc.errno in (errno.ENOENT, errno.EISDIR):  # a folder is not an object
        return ObjectNotFound(f"not found: {what}")
    return StorageError(f"{what}: {exc.strerror or exc}")


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename or unlink in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """Objects as files under `root` (which must exist)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.url = self.root
        self._made_dirs: set[str] = set()
        self._local = threading.local()
        self._fd_lock = threading.Lock()
        self._fd_caches: list[OrderedDict[str, int]] = []

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *validate_name(name).split("/"))

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        if length is not None and name.startswith("data/"):
            return self._pread(name, path, offset, length)
        try:
            with open(path, "rb", buffering=0) as f:
                if offset:
                    f.seek(offset)
                if length is None:
                    return f.read()
                data = f.read(length)
        except OSError as exc:
            raise _os_error(exc, f"reading {name}") from None
        if len(data) != length:
            raise StorageError(f"short read of {name}: wanted {length} bytes at {offset}")
        return data

    def _ensure_dir(self, folder: str) -> None:
        if folder in self._made_dirs:
            return
        if not os.path.isdir(folder):
            parent = os.path.dirname(folder)
            if parent != folder and not os.path.isdir(parent):
                self._ensure_dir(parent)
            try:
                os.mkdir(folder)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _os_error(exc, f"creating folder {folder}") from None
            fsync_dir(os.path.dirname(folder))
        self._made_dirs.add(folder)

    def _pread(self, name: str, path: str, offset: int, length: int) -> bytes:
        """Ranged read of a pack through a per-thread cache of open descriptors.

        Packs are immutable and named by their content, so a descriptor stays valid for the
        name (even after gc deletes the file, it reads the same verified bytes). Per thread,
        so no descriptor is ever closed under another thread's read.
        """
        fds = getattr(self._local, "fds", None)
        if fds is None:
            fds = self._local.fds = OrderedDict()
            with self._fd_lock:
                self._fd_caches.append(fds)
        fd = fds.get(name)
        try:
            if fd is None:
                fd = os.open(path, os.O_RDONLY)
                fds[name] = fd
                if len(fds) > 32:
                    os.close(fds.popitem(last=False)[1])
            else:
                fds.move_to_end(name)
            data = os.pread(fd, length, offset)
        except OSError as exc:
            raise _os_error(exc, f"reading {name}") from None
        if len(data) != length:
            raise StorageError(f"short read of {name}: wanted {length} bytes at {offset}")
        return data

    def put(self, name: str, data: bytes | bytearray | memoryview, exclusive: bool = False) -> None:
        path = self._path(name)
        folder = os.path.dirname(path)
        self._ensure_dir(folder)
        tmp = os.path.join(folder, TEMP_PREFIX + secrets.token_hex(8))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                # link() fails if the final name exists: an atomic create-if-absent.
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists(f"{name} exists already") from None
                os.unlink(tmp)
            else:
                os.replace(tmp, path)
            fsync_dir(folder)
        except OSError as exc:
            _remove_quietly(tmp)
            raise _os_error(exc, f"writing {name}") from None
        except BaseException:
            _remove_quietly(tmp)
            raise

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            os.unlink(path)
        except OSError as exc:
            raise _os_error(exc, f"deleting {name}") from None
        fsync_dir(os.path.dirname(path))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        start = self.root if not prefix else os.path.join(self.root, *prefix.strip("/").split("/"))
        if not os.path.isdir(start):
            return
        for folder, dirs, files in os.walk(start):
            dirs.sort()
            rel = os.path.relpath(folder, self.root)
            for fname in sorted(files):
                if fname.startswith("."):
                    continue
                name = fname if rel == "." else f"{rel.replace(os.sep, '/')}/{fname}"
                try:
                    size = os.stat(os.path.join(folder, fname)).st_size
                except FileNotFoundError:
                    continue
                yield ObjectInfo(name, size)

    def list_temporary(self) -> Iterator[str]:
        """Paths of leftover temporary files from interrupted writes (for gc and check)."""
        for folder, _dirs, files in os.walk(self.root):
            for fname in files:
                if fname.startswith(TEMP_PREFIX):
                    yield os.path.join(folder, fname)

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(name))
        except OSError as exc:
            raise _os_error(exc, f"reading {name}") from None
        if stat_mod.S_ISDIR(st.st_mode):  # a folder is not an object
            raise ObjectNotFound(f"not found: reading {name}")
        return ObjectInfo(name, st.st_size)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def free_space(self) -> int | None:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def close(self) -> None:
        """Close cached pack descriptors (call when no read is in progress)."""
        with self._fd_lock:
            caches, self._fd_caches = self._fd_caches, []
        for fds in caches:
            while fds:
                try:
                    os.close(fds.popitem()[1])
                except OSError:
                    pass


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
