"""SFTP backend (`sftp://user@host[:port]/path`) over the system's OpenSSH client.

ssh connects (`ssh -s host sftp`, as restic and Borg do: config, agent, keys, known_hosts and
jump hosts are OpenSSH's own; see `dedupe.storage.sftpssh`), and `dedupe.storage.sftpwire`
speaks SFTP over its pipes. Tests point it at a private sshd without touching `~/.ssh` with
`DEDUPE_SFTP_IDENTITY`, `DEDUPE_SFTP_KNOWN_HOSTS` and `DEDUPE_SSH_COMMAND` (`ssh -F FILE`).

Guarantees (the protocol's, see `dedupe.storage.base`):
- `put` uploads to a hidden `.tmp-<random>` name in the object's folder (folders are created as
  needed), asks the server to fsync it (`fsync@openssh.com`, when offered), then renames it over
  the final name with `posix-rename@openssh.com` (when offered), so readers see the whole object
  or nothing. An exclusive put renames with the plain SFTP rename, which OpenSSH implements with
  link(2): it fails if the name exists, atomically. A dropped connection leaves at most a
  `.tmp-` file, never listed.
- Writes and reads are pipelined with every reply checked, in requests as large as the server's
  `limits@openssh.com` allows (`dedupe.storage.sftpwire`).
- Connections come from a small pool (one SFTP session per thread at a time). A dropped
  connection is replaced and the operation retried once (`reconnect_attempts`); after that, or
  when the outcome of an exclusive rename is unknown, `TransientStorageError` is raised for
  `RetryingStorage` to handle with backoff.
- A write failing with SFTP's generic "Failure" while `statvfs@openssh.com` reports less free
  space than the object needs is reported as `OutOfSpace` (OpenSSH has no "disk full" status).
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat as stat_mod
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

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
from dedupe.storage.sftpssh import Connection, Resolved, SSHTarget, connect, parse_sftp_url, resolve
from dedupe.storage.sftpwire import (
    CREAT,
    EXCL,
    READ,
    WRITE,
    Attrs,
    ConnectionLost,
    SFTPError,
    SFTPSession,
)

TEMP_PREFIX = ".tmp-"

T = TypeVar("T")
_Entries = list[Attrs]  # (`list` is a method name inside SFTPStorage)


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
        self.target = target
        self.url = redact_url(url or f"sftp://{target.display}/{target.path.lstrip('/')}")
        self.max_connections = connections
        self.timeout = timeout
        self.reconnect_attempts = reconnect_attempts
        self._root = target.path or "."
        self.environ = environ  # ssh's environment when not this process's (None)
        self._pool = _Pool(self._connect, connections)
        self._resolved: Resolved | None = None
        self._resolving = threading.Lock()

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
                "creating the repository folder", lambda c: sftpio.makedirs(c.sftp, storage._root)
            )
        return storage

    # --- plumbing ------------------------------------------------------------------------------

    def _connect(self) -> Connection:
        env = os.environ if self.environ is None else self.environ
        with self._resolving:  # ssh -G once per storage: what the config says for this host
            if self._resolved is None:
                self._resolved = resolve(self.target, env)
        return connect(self.target, self._resolved, self.timeout, env)

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
            except ConnectionLost as exc:
                assert conn is not None
                self._pool.discard(conn)
                last = TransientStorageError(f"{what}: connection lost ({_lost(conn, exc)})")
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
            sftp = conn.sftp
            handle = sftp.open(path, READ)
            try:
                data = sftp.read_range(handle, offset, length)
            except SFTPError as exc:
                sftpio.close_quietly(sftp, handle)
                # OpenSSH opens a folder for reading and fails the read with a bare "Failure".
                if exc.errno is None and not sftpio.is_file(sftp, path):
                    raise ObjectNotFound(f"not found: {name}") from None
                raise
            sftp.close_later(handle)
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
        flags = WRITE | CREAT | EXCL
        try:
            handle = sftp.open(tmp, flags)
        except SFTPError as exc:
            if exc.errno != errno.ENOENT:
                raise
            sftpio.makedirs(sftp, folder)
            handle = sftp.open(tmp, flags)
        renaming = False
        try:
            try:  # without fsync@openssh.com, the server's ack it is
                sftp.write_file(handle, data, fsync="fsync@openssh.com" in sftp.extensions)
            except SFTPError:
                sftpio.close_quietly(sftp, handle)
                raise
            renaming = True
            if exclusive:
                self._rename_exclusive(sftp, tmp, path, name)
            else:
                self._replace(sftp, tmp, path)
        except BaseException as exc:
            if conn.alive():
                # Ask about space while our temporary still holds what it got: that is when a
                # full disk shows. OpenSSH reports ENOSPC only as a bare "Failure".
                full = isinstance(exc, SFTPError) and exc.errno is None
                full = full and sftpio.too_full(sftp, folder, len(data))
                sftpio.remove_quietly(sftp, tmp)
                if full:
                    raise OutOfSpace(f"the SFTP server ran out of space writing {name}") from None
            elif renaming and exclusive:
                # The rename may or may not have happened: retrying blindly could report
                # ObjectExists for our own write, so let the caller decide (RetryingStorage does).
                raise _Dropped(f"outcome of the exclusive rename of {name} unknown") from None
            raise

    def _replace(self, sftp: SFTPSession, tmp: str, path: str) -> None:
        if "posix-rename@openssh.com" in sftp.extensions:
            sftp.posix_rename(tmp, path)
            return
        # Without posix-rename an overwrite cannot be atomic; objects are rarely overwritten.
        try:
            sftp.rename(tmp, path)
        except SFTPError:
            sftp.remove(path)
            sftp.rename(tmp, path)

    def _rename_exclusive(self, sftp: SFTPSession, tmp: str, path: str, name: str) -> None:
        try:
            sftp.rename(tmp, path)
        except SFTPError as exc:
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
        seen = {self._run(f"listing {rel or '/'}", lambda c: c.sftp.realpath(start))}
        pending = [(rel, start, entries, next(iter(seen)))]
        while pending:
            folder, path, entries, real = pending.pop()
            subfolders = []
            for entry in sorted(entries, key=lambda e: e.filename):
                if entry.filename.startswith("."):
                    continue  # temporaries and anything else hidden
                name = f"{folder}/{entry.filename}" if folder else entry.filename
                full = posixpath.join(path, entry.filename)
                attrs: Attrs | None = entry
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

    def _follow(self, name: str, path: str) -> Attrs | None:
        """What a symlink points to, or None if it dangles."""

        def op(conn: Connection) -> Attrs | None:
            try:
                return conn.sftp.stat(path)
            except SFTPError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise

        return self._run(f"listing {name}", op)

    def _normalize(self, name: str, path: str) -> str:
        """The server's real path of `path` (symlinks resolved)."""
        return str(self._run(f"listing {name}", lambda conn: conn.sftp.realpath(path)))

    def _listdir(self, rel: str, path: str, *, start_folder: bool) -> _Entries | None:
        """A folder's entries. None only for a start folder that does not exist; every other
        failure raises (a shortened listing would make gc delete what it did not see)."""
        where = f"{rel}/" if rel else "the repository folder"

        def op(conn: Connection) -> _Entries | None:
            try:
                entries: _Entries = conn.sftp.listdir(path)
                return entries
            except SFTPError as exc:
                if exc.errno not in (None, errno.ENOENT, errno.EACCES):
                    raise
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
            "asking for free space", lambda conn: sftpio.statvfs_free(conn.sftp, self._root)
        )

    def close(self) -> None:
        self._pool.close()


def _mtime(attrs: Attrs) -> float | None:
    """The server's modification time (whole seconds by its clock), None if it sent none."""
    return float(attrs.st_mtime) if attrs.st_mtime is not None else None


def _lost(conn: Connection, exc: ConnectionLost) -> str:
    """Why a session ended: ssh's own last words if it said any, else what the pipe showed."""
    try:
        conn.proc.wait(timeout=2)  # ssh writes its reason as it exits, just after the pipe closes
    except subprocess.TimeoutExpired:
        return str(exc)  # still running: our timeout, or a server that stopped answering
    return conn.ssh_said() or str(exc)


def _map_error(exc: Exception, conn: Connection, what: str) -> StorageError:
    """The session's errors -> the protocol's. A dead ssh means transient, always."""
    if not conn.alive() or isinstance(exc, ConnectionLost | ConnectionError):
        return TransientStorageError(f"{what}: connection problem: {exc}")
    if isinstance(exc, SFTPError):
        if exc.errno == errno.ENOENT:
            return ObjectNotFound(f"not found: {what}")
        if exc.errno == errno.EACCES:
            return StorageError(f"{what}: permission denied on the SFTP server")
        return StorageError(f"{what}: the SFTP server said: {exc}")
    return StorageError(f"{what}: {exc}")
