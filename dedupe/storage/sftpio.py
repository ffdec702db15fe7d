"""Low-level SFTP requests for the SFTP backend: pipelined reads and writes, mkdir -p, statvfs.

paramiko's `SFTPFile.set_pipelined` never reads the status of the last writes (their replies are
dropped at close), so a failed write could go unnoticed; its `prefetch` starts a thread per file.
Here every request's reply is read and checked in order while many requests stay in flight, which
is what takes paramiko from a few MiB/s to 100+ MiB/s. Request sizes follow the server's
`limits@openssh.com` answer, else the 32 KiB every server accepts.

paramiko has no public call for "send a request, read its reply later", nor for the OpenSSH
extensions used here (`limits@`, `statvfs@`), so this module, and only this module, uses three
private methods of `paramiko.SFTPClient`: `_async_request`, `_read_response` and `_request`.
They have kept their signatures from paramiko 2.x to 5.x; pyproject.toml bounds paramiko below
the next major version (`paramiko>=3.4,<6`), `check_paramiko` refuses to run, with a clear
message, on a paramiko that lacks them, and tests/test_sftp_config.py checks their signatures,
so an upgrade that changes them fails the tests rather than a night's backup.
"""

from __future__ import annotations

import errno
import inspect
import posixpath
import stat as stat_mod
from collections import deque

import paramiko
from paramiko.sftp import (
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_READ,
    CMD_STATUS,
    CMD_WRITE,
    int64,
)

from dedupe.errors import StorageError
from dedupe.storage.sshconn import Connection

IO_CHUNK = 32768  # the SFTP read/write size every server accepts
MAX_IO_CHUNK = 256 * 1024 - 1024  # OpenSSH's own cap; used only when the server allows it
IN_FLIGHT_BYTES = 8 * 1024 * 1024  # outstanding per transfer: well above a LAN's bandwidth-delay


def write_all(conn: Connection, handle: bytes, data: memoryview) -> None:
    """Write `data` at offset 0 with many requests outstanding; check every reply, in order."""
    sftp, chunk_size = conn.sftp, conn.write_chunk
    in_flight = max(8, IN_FLIGHT_BYTES // chunk_size)
    pending: deque[int] = deque()
    offset = 0
    total = len(data)
    while offset < total or pending:
        while offset < total and len(pending) < in_flight:
            piece = bytes(data[offset : offset + chunk_size])
            pending.append(sftp._async_request(type(None), CMD_WRITE, handle, int64(offset), piece))
            offset += len(piece)
        kind, _msg = sftp._read_response(pending.popleft())  # raises OSError on an error status
        if kind != CMD_STATUS:
            raise paramiko.SSHException("the server answered a write with no status")


def read_range(conn: Connection, handle: bytes, offset: int, length: int) -> bytes:
    """Read `length` bytes at `offset` (fewer only at end of file), pipelined.

    A reply may be shorter than asked (a server capping reads): the rest of that piece is asked
    for again. An empty reply or an EOF status marks the end of the file.
    """
    sftp, chunk_size = conn.sftp, conn.read_chunk
    todo = deque(
        (at, min(chunk_size, offset + length - at))
        for at in range(offset, offset + length, chunk_size)
    )
    pending: deque[tuple[int, int, int]] = deque()  # (request, offset, size)
    pieces: dict[int, bytes] = {}
    eof_at = offset + length
    in_flight = max(8, IN_FLIGHT_BYTES // chunk_size)
    while todo or pending:
        while todo and len(pending) < in_flight:
            at, size = todo.popleft()
            if at < eof_at:
                req = sftp._async_request(type(None), CMD_READ, handle, int64(at), size)
                pending.append((req, at, size))
        if not pending:
            break
        req, at, size = pending.popleft()
        try:
            kind, msg = sftp._read_response(req)
        except EOFError:  # SFTP status EOF: the file ends at or before `at`
            eof_at = min(eof_at, at)
            continue
        if kind != CMD_DATA:
            raise paramiko.SSHException("the server answered a read with no data")
        data = msg.get_string()
        if not data:
            eof_at = min(eof_at, at)
            continue
        pieces[at] = data
        if len(data) < size:
            todo.appendleft((at + len(data), size - len(data)))
    out = bytearray()
    position = offset
    while position in pieces:
        piece = pieces.pop(position)
        out += piece
        position += len(piece)
    return bytes(out)


PRIVATE_CALLS = {
    "_async_request": ["fileobj", "t", "args"],
    "_read_response": ["waitfor"],
    "_request": ["t", "args"],
}


def check_paramiko() -> None:
    """StorageError unless paramiko's SFTPClient has the private calls used here, with the
    parameters used here (see the module docstring)."""
    for name, params in PRIVATE_CALLS.items():
        method = getattr(paramiko.SFTPClient, name, None)
        found = [] if method is None else list(inspect.signature(method).parameters)[1:]
        if found != params:
            raise StorageError(
                f"this paramiko ({paramiko.__version__}) is not one dedupe's SFTP backend works "
                f"with (SFTPClient.{name} changed); install a supported one: "
                "pip install 'paramiko>=3.4,<6'"
            )


def negotiate_limits(conn: Connection) -> None:
    """Use the server's read/write size limits (`limits@openssh.com`), else the safe 32 KiB.

    Bigger requests mean fewer Python-level round trips: reads go from ~60 to ~200 MiB/s.
    """
    try:
        kind, msg = conn.sftp._request(CMD_EXTENDED, "limits@openssh.com")
    except OSError:
        return  # not offered: keep the 32 KiB every server accepts
    if kind != CMD_EXTENDED_REPLY:
        return
    _max_packet, max_read, max_write = (msg.get_int64() for _ in range(3))
    if max_read:
        conn.read_chunk = max(IO_CHUNK, min(int(max_read), MAX_IO_CHUNK))
    if max_write:
        conn.write_chunk = max(IO_CHUNK, min(int(max_write), MAX_IO_CHUNK))


def makedirs(conn: Connection, path: str) -> None:
    """mkdir -p on the server."""
    try:
        conn.sftp.mkdir(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            parent = posixpath.dirname(path)
            if parent and parent != path:
                makedirs(conn, parent)
            try:
                conn.sftp.mkdir(path)
            except OSError:
                if not is_dir(conn.sftp, path):
                    raise
        elif not is_dir(conn.sftp, path):
            raise


def is_dir(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        return stat_mod.S_ISDIR(sftp.stat(path).st_mode or 0)
    except OSError:
        return False


def is_file(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        return stat_mod.S_ISREG(sftp.stat(path).st_mode or 0)
    except OSError:
        return False


def kind(sftp: paramiko.SFTPClient, path: str) -> str:
    """'folder', 'file', 'missing' or 'other', following symlinks; raises on other errors."""
    try:
        mode = sftp.stat(path).st_mode or 0
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return "missing"
        raise
    if stat_mod.S_ISDIR(mode):
        return "folder"
    return "file" if stat_mod.S_ISREG(mode) else "other"


def statvfs_free(conn: Connection, path: str) -> int | None:
    """Bytes available to us on the server's file system, or None if the server cannot tell."""
    try:
        kind, msg = conn.sftp._request(CMD_EXTENDED, "statvfs@openssh.com", path)
    except OSError as exc:
        if exc.errno is None:
            return None  # extension not offered, or the path is gone
        raise
    if kind != CMD_EXTENDED_REPLY:
        return None
    _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
    return int(bavail * frsize)


def too_full(conn: Connection, folder: str, needed: int) -> bool:
    """True if the server says it has less room than `needed` bytes (False if it cannot say)."""
    try:
        free = statvfs_free(conn, folder)
    except Exception:  # noqa: BLE001 - only a diagnosis; the caller has an error to raise anyway
        return False
    return free is not None and free < max(needed, 1)


def remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except Exception:  # noqa: BLE001 - best effort: a leftover temporary is never listed
        pass
