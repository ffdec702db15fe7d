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
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from dedupe.errors import ObjectExists, ObjectNotFound, OutOfSpace, StorageError
from dedupe.storage.base import (
    WRITER_DIRS,
    Leftover,
    ObjectInfo,
    is_pack_folder_name,
    leftover_name_ok,
    short_read,
    validate_name,
)

TEMP_PREFIX = ".tmp-"
FD_CACHE = 64

# (`list` is a method name inside the class, so these are spelled out here.)
_Files = list[tuple[str, os.stat_result]]  # (name, stat) of a folder's files
_Folders = list[tuple[str, str, os.stat_result]]  # (name, path, stat) of its subfolders
_Paths = list[str]


def _os_error(exc: OSError, what: str) -> StorageError | OutOfSpace:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutOfSpace(f"out of disk space while {what}")
    if exc.errno in (errno.ENOENT, errno.EISDIR):  # a folder is not an object
        return ObjectNotFound(f"not found: {what}")
    return StorageError(f"{what}: {exc.strerror or exc}")


def _listing_error(exc: OSError, where: str, path: str) -> StorageError:
    """A listing that cannot be completed is an error, never a shorter list (gc would delete
    whatever it did not see)."""
    reason = exc.strerror or str(exc)
    advice = (
        "The user running dedupe must be able to read every folder of the repository"
        if exc.errno in (errno.EACCES, errno.EPERM)
        else "Check the disk (a failing disk or a damaged file system gives errors like this)"
    )
    return StorageError(f"cannot list {where} of the repository: {reason} ({path}). {advice}")


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename or unlink in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """Objects as files under `root` (which must exist)."""

    # One uploader: it already overlaps writing with sealing, and a disk gains nothing more.
    max_connections = 1

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.url = self.root
        self._made_dirs: set[str] = set()
        self._fd_lock = threading.Lock()
        self._fds: OrderedDict[str, list[Any]] = OrderedDict()

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
            raise short_read(name, offset, length)
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
        """Ranged read of a pack through a shared cache of open descriptors.

        Packs are immutable and named by their content, so a cached descriptor stays valid for
        its name. Entries are reference counted: `delete` (and eviction) closes a descriptor
        at once, or when its last reader finishes, so a deleted pack's space is freed right
        away (gc on a full disk depends on it) and no read ever uses a closed descriptor.
        """
        with self._fd_lock:
            entry = self._fds.get(name)
            if entry is not None:
                self._fds.move_to_end(name)
                entry[1] += 1
        if entry is None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                raise _os_error(exc, f"reading {name}") from None
            entry = [fd, 1, False]  # descriptor, readers, closing
            with self._fd_lock:
                if name in self._fds:  # another thread opened it meanwhile: use one
                    os.close(fd)
                    entry = self._fds[name]
                    entry[1] += 1
                else:
                    self._fds[name] = entry
                    while len(self._fds) > FD_CACHE:
                        self._retire(self._fds.popitem(last=False)[1])
        try:
            data = os.pread(entry[0], length, offset)
        except OSError as exc:
            raise _os_error(exc, f"reading {name}") from None
        finally:
            with self._fd_lock:
                entry[1] -= 1
                if entry[2] and entry[1] == 0:
                    os.close(entry[0])
        if len(data) != length:
            raise short_read(name, offset, length)
        return data

    def _retire(self, entry: list[Any]) -> None:
        """Close a descriptor now, or when its last reader is done (call with the lock held)."""
        if entry[1] == 0:
            os.close(entry[0])
        else:
            entry[2] = True

    def _forget_fd(self, name: str) -> None:
        with self._fd_lock:
            entry = self._fds.pop(name, None)
            if entry is not None:
                self._retire(entry)

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
        self._forget_fd(name)
        try:
            os.unlink(path)
        except OSError as exc:
            raise _os_error(exc, f"deleting {name}") from None
        fsync_dir(os.path.dirname(path))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object below `prefix`; raises StorageError if any folder cannot be read.

        A missing start folder is an empty listing (nothing was ever written there); a start
        "folder" that is a file, an unreadable folder anywhere below, or a file whose size
        cannot be read raises, since a silently shortened listing would make gc delete data.
        Symlinked folders are followed (data/ may live on another disk), each real folder once:
        a folder reached twice (a symlink loop) raises.
        """
        rel = prefix.strip("/")
        start = os.path.join(self.root, *rel.split("/")) if rel else self.root
        where = f"{rel}/" if rel else "the repository folder"
        try:
            st = os.stat(start)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _listing_error(exc, where, start) from None
        if not stat_mod.S_ISDIR(st.st_mode):
            raise StorageError(
                f"cannot list {where}: {start} is not a folder. The repository is damaged or "
                "something else was put in its place"
            )
        yield from self._walk(rel, start, {(st.st_dev, st.st_ino)})

    def _walk(self, rel: str, folder: str, seen: set[tuple[int, int]]) -> Iterator[ObjectInfo]:
        """Depth-first, sorted; `seen` holds (st_dev, st_ino) of every folder entered."""
        files, subfolders = self._read_folder(rel, folder)
        for fname, st in files:
            yield ObjectInfo(f"{rel}/{fname}" if rel else fname, st.st_size, st.st_mtime)
        for dname, path, st in subfolders:
            key = (st.st_dev, st.st_ino)
            sub = f"{rel}/{dname}" if rel else dname
            if key in seen:
                raise StorageError(
                    f"cannot list {sub}/: it leads back to a folder already listed (a symbolic "
                    f"link loop, or two links to one folder) at {path}. Remove the extra link"
                )
            seen.add(key)
            yield from self._walk(sub, path, seen)

    def _read_folder(self, rel: str, folder: str) -> tuple[_Files, _Folders]:
        """(files, subfolders) of one folder, sorted by name, hidden names skipped; following
        symlinks. An entry that vanishes meanwhile is skipped; any other error raises."""
        where = f"{rel}/" if rel else "the repository folder"
        try:
            with os.scandir(folder) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as exc:
            raise _listing_error(exc, where, folder) from None
        files, subfolders = [], []
        for fname in names:
            if fname.startswith("."):
                continue  # temporaries (and nothing dedupe writes)
            path = os.path.join(folder, fname)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue  # deleted since the folder was read, or a dangling symlink
            except OSError as exc:
                raise _listing_error(exc, where, path) from None
            if stat_mod.S_ISDIR(st.st_mode):
                subfolders.append((fname, path, st))
            elif stat_mod.S_ISREG(st.st_mode):
                files.append((fname, st))
        return files, subfolders

    def list_temporary(self) -> Iterator[str]:
        """Paths of leftover temporary files from interrupted writes (for gc and check).

        Only in the folders dedupe itself writes (`LEFTOVER_FOLDERS` and data/<2 hex>/): a
        user's own `.tmp-*` file elsewhere under the repository is none of gc's business.
        """
        for folder in self._writer_folders():
            try:
                with os.scandir(folder) as entries:
                    names = sorted(e.name for e in entries if e.name.startswith(TEMP_PREFIX))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _listing_error(exc, "temporary files", folder) from None
            for fname in names:
                yield os.path.join(folder, fname)

    def _writer_folders(self) -> _Paths:
        folders = [os.path.join(self.root, *f.split("/")) if f else self.root for f in WRITER_DIRS]
        data = os.path.join(self.root, "data")
        try:
            with os.scandir(data) as entries:
                subs = sorted(e.name for e in entries if is_pack_folder_name(e.name))
        except FileNotFoundError:
            subs = []
        except OSError as exc:
            raise _listing_error(exc, "data/", data) from None
        return folders + [os.path.join(data, sub) for sub in subs]

    def list_leftovers(self) -> Iterator[Leftover]:
        """Temporary files of interrupted writes, relative to the root, with size and age."""
        now = time.time()
        for path in self.list_temporary():
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _listing_error(exc, "temporary files", path) from None
            rel = os.path.relpath(path, self.root).replace(os.sep, "/")
            yield Leftover(rel, st.st_size, max(0.0, now - st.st_mtime))

    def delete_leftover(self, leftover: Leftover) -> None:
        """Delete one temporary file; refuses anything that is not one under the root."""
        if not leftover_name_ok(leftover.name):
            raise StorageError(f"not a leftover temporary file: {leftover.name!r}")
        try:
            os.unlink(os.path.join(self.root, *leftover.name.split("/")))
        except OSError as exc:
            raise _os_error(exc, f"deleting {leftover.name}") from None

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(name))
        except OSError as exc:
            raise _os_error(exc, f"reading {name}") from None
        if stat_mod.S_ISDIR(st.st_mode):  # a folder is not an object
            raise ObjectNotFound(f"not found: reading {name}")
        return ObjectInfo(name, st.st_size, st.st_mtime)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def free_space(self) -> int | None:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def __del__(self) -> None:
        # Descriptors are plain ints: without this, a dropped LocalStorage would keep deleted
        # packs' disk space allocated for the life of the process.
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Close cached pack descriptors (those in use close when their read ends)."""
        with self._fd_lock:
            while self._fds:
                self._retire(self._fds.popitem()[1])


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
