"""SFTP backend (`sftp://user@host[:port]/path`) on paramiko.

How to log in, which keys and known_hosts are used, and how tests point it at a private sshd
without touching `~/.ssh` (`DEDUPE_SFTP_IDENTITY`, `DEDUPE_SFTP_KNOWN_HOSTS`, or a temporary HOME
with a `.ssh/config`): see `dedupe.storage.sshconn`.

Guarantees (the protocol's, see `dedupe.storage.base`):
- `put` uploads to a hidden `.tmp-<random>` name in the object's folder (folders are created as
  needed), asks the server to fsync it (`fsync@openssh.com`, when offered), then renames it over
  the final name with `posix-rename@openssh.com`, so readers see the whole object or nothing. An
  exclusive put renames with the plain SFTP rename, which OpenSSH implements with link(2): it fails
  if the name exists, atomically. A dropped connection leaves at most a `.tmp-` file, never listed.
- Writes and reads are pipelined with every reply checked (`dedupe.storage.sftpio` says why
  paramiko's own pipelining is not used): 100+ MiB/s on a fast link.
- Connections come from a small pool (one SFTP session per thread at a time). A dropped
  connection is replaced and the operation retried once (`reconnect_attempts`); after that, or
  when the outcome of an exclusive rename is unknown, `TransientStorageError` is raised for
  `RetryingStorage` to handle with backoff.
- A write failing with SFTP's generic "Failure" while `statvfs@openssh.com` reports less free
  space than the object needs is reported as `OutOfSpace` (OpenSSH has no "disk full" status).
"""

from __future__ import annotations

import errno
import posixpath
import secrets
import socket
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import paramiko
from paramiko.sftp import CMD_EXTENDED

from dedupe.errors import (
    ObjectExists,
    ObjectNotFound,
    OutOfSpace,
    StorageError,
    TransientStorageError,
)
from dedupe.storage import sftpio
from dedupe.storage.base import (
    WRITER_DIRS,
    Leftover,
    ObjectInfo,
    is_pack_folder_name,
    leftover_name_ok,
    redact_url,
    short_read,
    validate_name,
)
from dedupe.storage.sshconn import Connection, SSHTarget, connect, parse_sftp_url

TEMP_PREFIX = ".tmp-"

T = TypeVar("T")
_Entries = list[paramiko.SFTPAttributes]  # (`list` is a method name inside SFTPStorage)


class _Pool:
    """Up to `size` connections, each lent to one caller at a time."""

    def __init__(self, factory: Callable[[], Connection], size: int) -> None:
        self._factory = factory
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self.closed = False

    def acquire(self) -> Connection:
        if self.closed:
            raise StorageError("the SFTP storage is closed")
        self._slots.acquire()
        try:
            while True:
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
                if conn is None:
                    return self._factory()
                if conn.alive():
                    return conn
                conn.close()
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: Connection) -> None:
        with self._lock:
            if self.closed:
                conn.close()
            else:
                self._idle.append(conn)
        self._slots.release()

    def discard(self, conn: Connection) -> None:
        conn.close()
        self._slots.release()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _Dropped(Exception):
    """Internal: the connection broke during an operation whose retry is unsafe."""


class SFTPStorage:
    """Objects as files under a folder on an SFTP server.

    Thread-safe: up to `connections` SSH sessions serve parallel callers (`max_connections` tells
    an uploader how many threads are worth using). `reconnect_attempts` is how often one
    operation silently reconnects before raising TransientStorageError.
    """

    def __init__(
        self,
        target: SSHTarget,
        *,
        url: str | None = None,
        connections: int = 4,
        timeout: float = 30.0,
        reconnect_attempts: int = 1,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        sftpio.check_paramiko()  # before any connection: a clear message, not a retry loop
        self.target = target
        self.url = redact_url(url or f"sftp://{target.display}/{target.path.lstrip('/')}")
        self.max_connections = connections
        self.timeout = timeout
        self.reconnect_attempts = reconnect_attempts
        self._root = target.path or "."
        self._environ = environ
        self._pool = _Pool(self._connect, connections)
        self._can_fsync = True
        self._can_posix_rename = True

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        create: bool = False,
        identity: str | None = None,
        known_hosts: str | None = None,
        ssh_config: str | None = None,
        **kwargs: object,
    ) -> SFTPStorage:
        """Open `url`; with `create`, make the repository folder (mkdir -p) for `init`."""
        target = parse_sftp_url(
            url, identity=identity, known_hosts=known_hosts, ssh_config=ssh_config
        )
        storage = cls(target, url=url, **kwargs)  # type: ignore[arg-type]
        if create:
            storage._run(
                "creating the repository folder", lambda c: sftpio.makedirs(c, storage._root)
            )
        return storage

    # --- plumbing ------------------------------------------------------------------------------

    def _connect(self) -> Connection:
        conn = connect(self.target, self.timeout, self._environ)
        try:
            sftpio.negotiate_limits(conn)
        except Exception as exc:
            conn.close()
            raise TransientStorageError(
                f"SFTP session with {self.target.display} failed: {exc}"
            ) from None
        return conn

    def _path(self, name: str) -> str:
        return posixpath.join(self._root, validate_name(name))

    def _run(self, what: str, op: Callable[[Connection], T], retry: bool = True) -> T:
        """Run `op` on a pooled connection, mapping errors; reconnect and retry if it dropped."""
        attempts = 1 + (self.reconnect_attempts if retry else 0)
        last: StorageError | None = None
        for _attempt in range(attempts):
            conn = None
            try:
                conn = self._pool.acquire()
                result = op(conn)
            except TransientStorageError as exc:  # connect() failed, or op raised it
                if conn is not None:
                    self._pool.discard(conn)
                last = exc
                continue
            except _Dropped as exc:
                assert conn is not None
                self._pool.discard(conn)
                raise TransientStorageError(f"{what}: connection lost ({exc})") from None
            except (StorageError, OutOfSpace):
                if conn is not None:
                    self._pool.release(conn)
                raise
            except Exception as exc:
                if conn is None:  # connect() failed in a way it does not know about
                    raise StorageError(f"{what}: cannot open an SFTP session: {exc}") from None
                err = _map_error(exc, conn, what)
                if isinstance(err, TransientStorageError):
                    self._pool.discard(conn)
                    last = err
                    continue
                self._pool.release(conn)
                raise err from None
            except BaseException:
                if conn is not None:
                    self._pool.discard(conn)  # interrupted mid-request: its state is unknown
                raise
            self._pool.release(conn)
            return result
        assert last is not None
        raise last

    # --- protocol ------------------------------------------------------------------------------

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)

        def op(conn: Connection) -> bytes:
            try:
                with conn.sftp.open(path, "rb") as f:
                    end = f.stat().st_size if length is None else offset + length
                    data = sftpio.read_range(conn, f.handle, offset, max(0, end - offset))
            except OSError as exc:
                # OpenSSH opens a folder for reading and fails the read with a bare "Failure".
                if exc.errno is None and conn.alive() and not sftpio.is_file(conn.sftp, path):
                    raise ObjectNotFound(f"not found: {name}") from None
                raise
            if length is not None and len(data) != length:
                raise short_read(name, offset, length)
            return data

        return self._run(f"reading {name}", op)

    def put(self, name: str, data: bytes | bytearray | memoryview, exclusive: bool = False) -> None:
        path = self._path(name)
        view = memoryview(data).cast("B")
        self._run(f"writing {name}", lambda conn: self._put(conn, name, path, view, exclusive))

    def _put(
        self, conn: Connection, name: str, path: str, data: memoryview, exclusive: bool
    ) -> None:
        sftp = conn.sftp
        folder = posixpath.dirname(path)
        tmp = posixpath.join(folder, TEMP_PREFIX + secrets.token_hex(8))
        try:
            f = sftp.open(tmp, "wbx")
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            sftpio.makedirs(conn, folder)
            f = sftp.open(tmp, "wbx")
        renaming = False
        try:
            with f:
                sftpio.write_all(conn, f.handle, data)
                self._fsync(sftp, f.handle)
            renaming = True
            if exclusive:
                self._rename_exclusive(sftp, tmp, path, name)
            else:
                self._replace(sftp, tmp, path)
        except BaseException as exc:
            if conn.alive():
                # Ask about space while our temporary still holds what it got: that is when a
                # full disk shows. OpenSSH reports ENOSPC only as a bare "Failure".
                full = isinstance(exc, OSError) and exc.errno is None
                full = full and sftpio.too_full(conn, folder, len(data))
                sftpio.remove_quietly(sftp, tmp)
                if full:
                    raise OutOfSpace(f"the SFTP server ran out of space writing {name}") from None
            elif renaming and exclusive:
                # The rename may or may not have happened: retrying blindly could report
                # ObjectExists for our own write, so let the caller decide (RetryingStorage does).
                raise _Dropped(f"outcome of the exclusive rename of {name} unknown") from None
            raise

    def _fsync(self, sftp: paramiko.SFTPClient, handle: bytes) -> None:
        if not self._can_fsync:
            return
        try:
            sftp._request(CMD_EXTENDED, "fsync@openssh.com", handle)
        except OSError as exc:
            if exc.errno is not None:
                raise
            self._can_fsync = False  # not offered (a non-OpenSSH server): the server's ack it is

    def _replace(self, sftp: paramiko.SFTPClient, tmp: str, path: str) -> None:
        if self._can_posix_rename:
            try:
                sftp.posix_rename(tmp, path)
                return
            except OSError as exc:
                if "unsupported" not in str(exc).lower():
                    raise
                self._can_posix_rename = False
        # Without posix-rename an overwrite cannot be atomic; objects are rarely overwritten.
        try:
            sftp.rename(tmp, path)
        except OSError:
            sftp.remove(path)
            sftp.rename(tmp, path)

    def _rename_exclusive(self, sftp: paramiko.SFTPClient, tmp: str, path: str, name: str) -> None:
        try:
            sftp.rename(tmp, path)
        except OSError as exc:
            if exc.errno is None and sftpio.is_file(sftp, path):
                raise ObjectExists(f"{name} exists already") from None
            raise

    def delete(self, name: str) -> None:
        path = self._path(name)
        self._run(f"deleting {name}", lambda conn: conn.sftp.remove(path))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object below `prefix`; raises if any folder cannot be read (see `Storage.list`).

        Only a start folder that does not exist lists as empty. Symlinks are followed, as the
        local backend does; a folder reached twice (by the server's realpath) raises.
        """
        rel = prefix.strip("/")
        if rel:
            validate_name(rel)
        start = posixpath.join(self._root, rel) if rel else self._root
        entries = self._listdir(rel, start, start_folder=True)
        if entries is None:
            return
        seen = {self._run(f"listing {rel or '/'}", lambda c: c.sftp.normalize(start))}
        pending = [(rel, start, entries, next(iter(seen)))]
        while pending:
            folder, path, entries, real = pending.pop()
            subfolders = []
            for entry in sorted(entries, key=lambda e: e.filename):
                if entry.filename.startswith("."):
                    continue  # temporaries and anything else hidden
                name = f"{folder}/{entry.filename}" if folder else entry.filename
                full = posixpath.join(path, entry.filename)
                attrs: paramiko.SFTPAttributes | None = entry
                sub_real = posixpath.join(real, entry.filename)
                if stat_mod.S_ISLNK(entry.st_mode or 0):
                    attrs = self._follow(name, full)
                    if attrs is not None and stat_mod.S_ISDIR(attrs.st_mode or 0):
                        sub_real = self._normalize(name, full)
                if attrs is None:
                    continue  # a dangling symlink: no object
                mode = attrs.st_mode or 0
                if stat_mod.S_ISDIR(mode):
                    if sub_real in seen:
                        raise StorageError(
                            f"cannot list {name}/: it leads back to a folder already listed (a "
                            "symbolic link loop, or two links to one folder) on the SFTP server. "
                            "Remove the extra link"
                        )
                    seen.add(sub_real)
                    subfolders.append((name, full, sub_real))
                elif stat_mod.S_ISREG(mode):
                    yield ObjectInfo(name, attrs.st_size or 0, _mtime(attrs))
            for name, full, sub_real in reversed(subfolders):
                listed = self._listdir(name, full, start_folder=False)
                assert listed is not None
                pending.append((name, full, listed, sub_real))

    def _follow(self, name: str, path: str) -> paramiko.SFTPAttributes | None:
        """What a symlink points to, or None if it dangles."""

        def op(conn: Connection) -> paramiko.SFTPAttributes | None:
            try:
                return conn.sftp.stat(path)
            except OSError as exc:
                if exc.errno == errno.ENOENT and conn.alive():
                    return None
                raise

        return self._run(f"listing {name}", op)

    def _normalize(self, name: str, path: str) -> str:
        """The server's real path of `path` (symlinks resolved)."""
        return str(self._run(f"listing {name}", lambda conn: conn.sftp.normalize(path)))

    def _listdir(self, rel: str, path: str, *, start_folder: bool) -> _Entries | None:
        """A folder's entries. None only for a start folder that does not exist; every other
        failure raises (a shortened listing would make gc delete what it did not see)."""
        where = f"{rel}/" if rel else "the repository folder"

        def op(conn: Connection) -> _Entries | None:
            try:
                entries: _Entries = conn.sftp.listdir_attr(path)
                return entries
            except OSError as exc:
                if not conn.alive() or exc.errno not in (None, errno.ENOENT, errno.EACCES):
                    raise  # the connection is in trouble: _run makes it transient
                kind = sftpio.kind(conn.sftp, path)
                if kind == "missing" and start_folder:
                    return None
                if kind == "file":
                    reason = f"{path} is not a folder (the repository is damaged)"
                elif exc.errno == errno.EACCES:
                    reason = (
                        f"permission denied on the SFTP server ({path}). The SSH user must be "
                        "able to read every folder of the repository"
                    )
                elif kind == "missing":
                    reason = f"{path} vanished while it was being listed"
                else:
                    reason = f"the SFTP server said: {exc} ({path})"
                raise StorageError(f"cannot list {where} of the repository: {reason}") from None

        return self._run(f"listing {where}", op)

    def list_temporary(self) -> Iterator[str]:
        """Server paths of leftover temporary files from interrupted writes (for gc and check)."""
        for leftover in self.list_leftovers():
            yield posixpath.join(self._root, leftover.name)

    def list_leftovers(self) -> Iterator[Leftover]:
        """Temporary files of interrupted uploads, relative to the repository root.

        Only in the folders dedupe writes (`WRITER_DIRS` and data/<2 hex>/): a user's own
        `.tmp-*` file elsewhere under the repository is none of gc's business.
        """
        now = time.time()
        data = self._listdir("data", posixpath.join(self._root, "data"), start_folder=True)
        pack_folders = sorted(
            f"data/{e.filename}"
            for e in data or []
            if is_pack_folder_name(e.filename) and stat_mod.S_ISDIR(e.st_mode or 0)
        )
        for folder in [*WRITER_DIRS, *pack_folders]:
            path = posixpath.join(self._root, folder) if folder else self._root
            entries = self._listdir(folder, path, start_folder=True)
            for entry in sorted(entries or [], key=lambda e: e.filename):
                if entry.filename.startswith(TEMP_PREFIX) and stat_mod.S_ISREG(entry.st_mode or 0):
                    rel = f"{folder}/{entry.filename}" if folder else entry.filename
                    age = max(0.0, now - (entry.st_mtime or now))
                    yield Leftover(rel, entry.st_size or 0, age)

    def delete_leftover(self, leftover: Leftover) -> None:
        """Delete one temporary file; refuses anything that is not one under the root."""
        if not leftover_name_ok(leftover.name):
            raise StorageError(f"not a leftover temporary file: {leftover.name!r}")
        path = posixpath.join(self._root, leftover.name)
        self._run(f"deleting {leftover.name}", lambda conn: conn.sftp.remove(path))

    def stat(self, name: str) -> ObjectInfo:
        path = self._path(name)
        attrs = self._run(f"reading {name}", lambda conn: conn.sftp.stat(path))
        if not stat_mod.S_ISREG(attrs.st_mode or 0):
            raise ObjectNotFound(f"not found: {name}")
        return ObjectInfo(name, attrs.st_size or 0, _mtime(attrs))

    def exists(self, name: str) -> bool:
        try:
            self.stat(name)
        except ObjectNotFound:
            return False
        return True

    def free_space(self) -> int | None:
        return self._run(
            "asking for free space", lambda conn: sftpio.statvfs_free(conn, self._root)
        )

    def close(self) -> None:
        self._pool.close()


def _mtime(attrs: paramiko.SFTPAttributes) -> float | None:
    """The server's modification time (whole seconds by its clock), None if it sent none."""
    return float(attrs.st_mtime) if attrs.st_mtime is not None else None


def _map_error(exc: Exception, conn: Connection, what: str) -> StorageError:
    """paramiko's exceptions -> the protocol's. A dead transport means transient, always."""
    if not conn.alive() or isinstance(
        exc, paramiko.SSHException | EOFError | socket.timeout | ConnectionError
    ):
        return TransientStorageError(f"{what}: connection problem: {exc}")
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOENT:
            return ObjectNotFound(f"not found: {what}")
        if exc.errno == errno.EACCES:
            return StorageError(f"{what}: permission denied on the SFTP server")
        if exc.errno is not None:  # a socket-level errno: the connection is in trouble
            return TransientStorageError(f"{what}: {exc.strerror or exc}")
        return StorageError(f"{what}: the SFTP server said: {exc}")
    return StorageError(f"{what}: {exc}")
