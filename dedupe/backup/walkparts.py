"""Pieces of the walk that need no walker state: exclusion patterns, owner names and the node
metadata every kind of entry shares (`Owners`), the digest that says whether a folder changed,
the normalised list of sources, and the one way a file the walk listed is opened for reading
(`open_listed`): only if it is still the regular file listed, and without ever blocking."""

from __future__ import annotations

import errno
import fnmatch
import grp
import os
import pwd
import stat
from collections.abc import Callable, Iterable

import blake3
import msgpack

from dedupe.model.tree import Node


class Excluder:
    """`--exclude GLOB`: a pattern without '/' matches a name anywhere; one with '/' matches
    the whole absolute path (and everything under a matched folder is left out with it)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.by_name = [p for p in patterns if "/" not in p]
        self.by_path = [p.rstrip("/") for p in patterns if "/" in p]
        self.active = bool(self.by_name or self.by_path)

    def excluded(self, path: bytes, name: bytes) -> bool:
        if not self.by_name and not self.by_path:
            return False
        name_s = os.fsdecode(name)
        if any(fnmatch.fnmatchcase(name_s, p) for p in self.by_name):
            return True
        path_s = os.fsdecode(path)
        return any(fnmatch.fnmatchcase(path_s, p) for p in self.by_path)


def _cached_name(
    number: int, cache: dict[int, str | None], lookup: Callable[[int], str]
) -> str | None:
    if number not in cache:
        try:
            cache[number] = lookup(number)
        except KeyError:  # no such user or group on this machine
            cache[number] = None
    return cache[number]


def owner_name(uid: int, cache: dict[int, str | None]) -> str | None:
    return _cached_name(uid, cache, lambda n: pwd.getpwuid(n).pw_name)


def group_name(gid: int, cache: dict[int, str | None]) -> str | None:
    return _cached_name(gid, cache, lambda n: grp.getgrgid(n).gr_name)


class Owners:
    """Builds nodes with the metadata every kind shares (mode, mtime, owner and group, by number
    and by name), looking each user and group name up once per snapshot."""

    def __init__(self) -> None:
        self._users: dict[int, str | None] = {}
        self._groups: dict[int, str | None] = {}

    def node(self, name: bytes, kind: str, st: os.stat_result, **fields: object) -> Node:
        """A node of `kind` with the metadata taken from `st` and the given `fields`."""
        uid, gid = st.st_uid, st.st_gid
        users, groups = self._users, self._groups
        return Node(
            name,
            kind,
            st.st_mode & 0o7777,
            st.st_mtime_ns,
            uid,
            gid,
            users[uid] if uid in users else owner_name(uid, users),
            groups[gid] if gid in groups else group_name(gid, groups),
            **fields,  # type: ignore[arg-type]
        )


def folder_digest(
    children: list[tuple[bytes, bytes, os.stat_result]], subtrees: dict[bytes, bytes | None]
) -> bytes:
    """A digest of everything that would change a folder's tree: each entry's name and stat,
    and each subfolder's tree id."""
    packed = msgpack.packb(
        [
            (
                name,
                st.st_mode,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_uid,
                st.st_gid,
                subtrees.get(name),
            )
            for name, _child, st in children
        ]
    )
    return blake3.blake3(packed).digest()[:16]


def normalise_sources(paths: Iterable[bytes]) -> list[bytes]:
    """Absolute, normalised, without paths that lie under another given path."""
    absolute = sorted({os.path.normpath(os.path.abspath(p)) for p in paths})
    kept: list[bytes] = []
    for path in absolute:
        if path == b"/":
            return [b"/"]
        if not any(path.startswith(k.rstrip(b"/") + b"/") for k in kept):
            kept.append(path)
    return kept


def source_problem(path: bytes) -> str | None:
    """Why a source named on the command line cannot be backed up, or None if it can: it does
    not exist, cannot be looked at, or is not a regular file, folder or symlink (a FIFO or a
    device would save an empty snapshot that looks like a good one)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "it does not exist, so it was not backed up"
    except OSError as exc:
        return f"it cannot be looked at ({exc.strerror or exc}), so it was not backed up"
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return None
    return f"it is {kind_of(mode)}, not a file, folder or symlink, so it was not backed up"


class NotTheListedFile(OSError):
    """What is under the name now is not the regular file the walk listed (a FIFO, a device, a
    symlink or another file took its place): it is not read, and counts as unreadable."""


_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words for a message."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "something that is not a regular file"


def open_listed(path: bytes, listed: os.stat_result) -> int:
    """A blocking read descriptor of `path`, only if it is still the regular file `listed`
    (the walk's lstat) describes; else NotTheListedFile (or the OSError of the open).

    A plain open() of a FIFO waits for a writer forever (a snapshot hung holding its lock, so
    every later gc and forget failed), and one of a device can have side effects: the file is
    opened with O_NONBLOCK (which opens a FIFO at once), O_NOFOLLOW and O_NOCTTY, then checked
    with fstat before a single byte is read.
    """
    try:
        fd = os.open(path, _READ_FLAGS | getattr(os, "O_NOATIME", 0))
    except PermissionError:  # O_NOATIME is refused on files we do not own
        fd = _open_plain(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink that took the file's place
            raise _replaced(path, "a symlink") from None
        raise
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            raise _replaced(path, kind_of(now.st_mode))
        if (now.st_ino, now.st_dev) != (listed.st_ino, listed.st_dev):
            raise _replaced(path, "another file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_plain(path: bytes) -> int:
    try:
        return os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _replaced(path, "a symlink") from None
        raise


def _replaced(path: bytes, by: str) -> NotTheListedFile:
    return NotTheListedFile(
        errno.ESTALE,
        f"it was replaced by {by} while the snapshot ran, so it was not saved "
        "(the next snapshot saves what is there then)",
        path,
    )
