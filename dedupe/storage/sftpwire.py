"""An SFTP version 3 client over a pair of pipes (those of `ssh -s host sftp`), synchronous.

This is the protocol restic and Borg speak through the system's `ssh`: the draft
(draft-ietf-secsh-filexfer-02) plus the OpenSSH extensions the server announces in its VERSION
reply (`posix-rename@`, `statvfs@`, `fsync@`, `limits@openssh.com`). No library's private API:
the whole client is here, about 400 lines, and only the calls the SFTP backend makes.

Guarantees:
- Every request's reply is read and checked, in any order the server sends them (matched by
  request id). Reads and writes keep up to `IN_FLIGHT_BYTES` outstanding (pipelined, as
  OpenSSH's own sftp client does), each request no larger than the server's `limits@openssh.com`
  answer allows (read, write and whole-packet sizes), else the 32 KiB every server accepts.
- An error status is an `SFTPError` (an OSError: ENOENT for "no such file", EACCES for
  "permission denied", errno None otherwise, as the backend expects). The pipes closing, a
  malformed packet or `timeout` seconds without any progress is `ConnectionLost`: the session
  is unusable after it.
- Sending never deadlocks against a server that is answering: while a large request batch is
  written, replies are read into a buffer (select on both pipes).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import time
from collections import deque
from dataclasses import dataclass

VERSION = 3
IO_CHUNK = 32768  # the read/write size every server accepts
IN_FLIGHT_BYTES = 8 * 1024 * 1024  # outstanding per transfer: well above a LAN's bandwidth-delay
PIPE_SIZE = 1024 * 1024  # Linux pipe buffer asked for (fewer wake-ups per MiB)

# Packet types
_INIT, _VERSION, _OPEN, _CLOSE, _READ, _WRITE, _LSTAT, _FSTAT = 1, 2, 3, 4, 5, 6, 7, 8
_OPENDIR, _READDIR, _REMOVE, _MKDIR, _REALPATH, _STAT, _RENAME = 11, 12, 13, 14, 16, 17, 18
_STATUS, _HANDLE, _DATA, _NAME, _ATTRS = 101, 102, 103, 104, 105
_EXTENDED, _EXTENDED_REPLY = 200, 201

# Status codes
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE, BAD_MESSAGE = 0, 1, 2, 3, 4, 5
OP_UNSUPPORTED = 8

# Open flags
READ, WRITE, CREAT, TRUNC, EXCL = 0x01, 0x02, 0x08, 0x10, 0x20

_ATTR_SIZE, _ATTR_UIDGID, _ATTR_PERMISSIONS, _ATTR_ACMODTIME = 0x1, 0x2, 0x4, 0x8
_ATTR_EXTENDED = 0x80000000
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">IBI")  # length, type, request id


class SFTPError(OSError):
    """The server answered with an error status (`code` is SFTP's status code)."""

    def __init__(self, code: int, message: str) -> None:
        number = {NO_SUCH_FILE: errno.ENOENT, PERMISSION_DENIED: errno.EACCES}.get(code)
        super().__init__(number, message or f"SFTP status {code}")
        self.code = code

    def __str__(self) -> str:
        return str(self.strerror)


class ConnectionLost(Exception):
    """The session is gone (pipes closed, garbage on them, or no progress within the timeout)."""


@dataclass
class Attrs:
    """What a stat or a directory entry says; None where the server sent nothing."""

    filename: str = ""
    st_size: int | None = None
    st_mode: int | None = None
    st_mtime: int | None = None


class _Reader:
    """Fields of one reply, in order."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data)
        self.at = 0

    def u32(self) -> int:
        value: int = _U32.unpack_from(self.data, self.at)[0]
        self.at += 4
        return value

    def u64(self) -> int:
        value: int = _U64.unpack_from(self.data, self.at)[0]
        self.at += 8
        return value

    def string(self) -> bytes:
        size = self.u32()
        if self.at + size > len(self.data):
            raise ConnectionLost("the SFTP server sent a malformed reply")
        value = bytes(self.data[self.at : self.at + size])
        self.at += size
        return value

    def text(self) -> str:
        return self.string().decode("utf-8", "replace")

    def attrs(self, filename: str = "") -> Attrs:
        flags = self.u32()
        out = Attrs(filename)
        if flags & _ATTR_SIZE:
            out.st_size = self.u64()
        if flags & _ATTR_UIDGID:
            self.at += 8
        if flags & _ATTR_PERMISSIONS:
            out.st_mode = self.u32()
        if flags & _ATTR_ACMODTIME:
            self.at += 4
            out.st_mtime = self.u32()
        if flags & _ATTR_EXTENDED:
            for _ in range(2 * self.u32()):
                self.string()
        return out


def _string(value: bytes | str) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return _U32.pack(len(raw)) + raw


_NO_ATTRS = _U32.pack(0)


class SFTPSession:
    """One SFTP session over `reader`/`writer` file descriptors; one thread at a time."""

    def __init__(self, reader: int, writer: int, timeout: float) -> None:
        self._in, self._out, self.timeout = reader, writer, timeout
        for fd in (reader, writer):
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except (OSError, AttributeError):
                pass  # not a pipe, or not Linux: the default buffer works too
        os.set_blocking(writer, False)
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self._replies: dict[int, tuple[int, bytes]] = {}
        self._abandoned: set[int] = set()  # requests whose replies nobody will ask for
        self.broken = False  # set when ConnectionLost was raised: the session is unusable
        self._next_id = 1
        self.extensions: dict[str, bytes] = {}
        self.read_chunk = self.write_chunk = IO_CHUNK
        self._max_packet = IO_CHUNK + 1024

    # --- transport -------------------------------------------------------------------------

    def start(self) -> None:
        """INIT/VERSION, then the server's limits if it announces them."""
        self._outbuf += _U32.pack(5) + bytes([_INIT]) + _U32.pack(VERSION)
        kind, body = self._packet()
        if kind != _VERSION:
            raise ConnectionLost(f"the server did not start SFTP (it sent packet type {kind})")
        reader = _Reader(body)
        version = reader.u32()
        if version < VERSION:
            raise ConnectionLost(f"the server speaks SFTP version {version}, 3 is needed")
        while reader.at < len(body):
            name = reader.text()
            self.extensions[name] = reader.string()
        if "limits@openssh.com" in self.extensions:
            reply = self._extended("limits@openssh.com")
            max_packet, max_read, max_write = reply.u64(), reply.u64(), reply.u64()
            overhead = 1024  # room for the header, the handle and the offset in a packet
            if max_packet:
                self._max_packet = max_packet
            room = (max_packet or (1 << 31)) - overhead
            if max_read:
                self.read_chunk = max(1024, min(max_read, room))
            if max_write:
                self.write_chunk = max(1024, min(max_write, room))

    def _fail(self, why: str) -> ConnectionLost:
        self.broken = True
        return ConnectionLost(why)

    def _pump(self, want_reply: bool) -> None:
        """Write what is queued; read what arrives. Returns after some progress: the queue
        written (when no reply is wanted) or new bytes read. `timeout` seconds without any
        progress is ConnectionLost."""
        deadline = time.monotonic() + self.timeout
        while True:
            poller = select.poll()
            poller.register(self._in, select.POLLIN)
            if self._outbuf:
                poller.register(self._out, select.POLLOUT)
            wait = max(0.0, deadline - time.monotonic())
            events = dict(poller.poll(wait * 1000))
            if events.get(self._out, 0) & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                try:
                    sent = os.write(self._out, self._outbuf)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    raise self._fail(f"the SSH connection closed ({exc.strerror})") from None
                del self._outbuf[:sent]
                if sent:
                    deadline = time.monotonic() + self.timeout
            if events.get(self._in, 0):
                try:
                    data = os.read(self._in, PIPE_SIZE)
                except OSError as exc:
                    raise self._fail(f"the SSH connection failed ({exc.strerror})") from None
                if not data:
                    raise self._fail("the SSH connection closed")
                self._inbuf += data
                return
            if not want_reply and not self._outbuf:
                return
            if not events and time.monotonic() >= deadline:
                raise self._fail(f"the SFTP server did not answer for {self.timeout:.0f} s")

    def _packet(self) -> tuple[int, bytes]:
        """The next whole packet from the server: (type, body after the type byte)."""
        while True:
            if len(self._inbuf) >= 5:
                length = _U32.unpack_from(self._inbuf)[0]
                if length < 1 or length > self._max_packet + 65536:
                    raise self._fail(f"the SFTP server sent a malformed packet ({length})")
                if len(self._inbuf) >= 4 + length:
                    kind = self._inbuf[4]
                    body = bytes(self._inbuf[5 : 4 + length])
                    del self._inbuf[: 4 + length]
                    return kind, body
            self._pump(want_reply=True)

    def send(self, kind: int, *fields: bytes | memoryview) -> int:
        """Queue a request; its id. Large queues are written out at once."""
        request = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        size = 5 + sum(len(f) for f in fields)
        self._outbuf += _HEADER.pack(size, kind, request)
        for field in fields:
            self._outbuf += field
        while len(self._outbuf) >= PIPE_SIZE:
            self._pump(want_reply=False)
        return request

    def reply(self, request: int) -> tuple[int, _Reader]:
        """The reply to `request`: (type, fields after the id). Error statuses raise."""
        try:
            while request not in self._replies:
                kind, body = self._packet()
                if len(body) < 4:
                    raise self._fail("the SFTP server sent a malformed reply")
                number = _U32.unpack_from(body)[0]
                if number in self._abandoned:
                    self._abandoned.discard(number)
                else:
                    self._replies[number] = (kind, body)
            kind, body = self._replies.pop(request)
            reader = _Reader(body)
            reader.at = 4
            if kind == _STATUS:
                code = reader.u32()
                message = reader.text() if reader.at < len(body) else ""
                if code != OK:
                    raise SFTPError(code, message)
            return kind, reader
        except (ConnectionLost, struct.error) as exc:
            self.broken = True
            if isinstance(exc, ConnectionLost):
                raise
            raise ConnectionLost("the SFTP server sent a malformed reply") from None

    def abandon(self, requests: list[int]) -> None:
        """Their replies, when they come, are dropped (a transfer stopped at an error)."""
        for request in requests:
            if self._replies.pop(request, None) is None:
                self._abandoned.add(request)

    def _call(self, kind: int, *fields: bytes) -> tuple[int, _Reader]:
        return self.reply(self.send(kind, *fields))

    def _expect(self, want: int, kind: int, *fields: bytes) -> _Reader:
        got, reader = self._call(kind, *fields)
        if got != want:
            raise self._fail(f"the SFTP server answered type {got}, expected {want}")
        return reader

    def _extended(self, name: str, *fields: bytes) -> _Reader:
        """An extension that answers with data (an error status raises)."""
        return self._expect(_EXTENDED_REPLY, _EXTENDED, _string(name), *fields)

    # --- requests ----------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> bytes:
        return self._expect(_HANDLE, _OPEN, _string(path), _U32.pack(flags), _NO_ATTRS).string()

    def close(self, handle: bytes) -> None:
        self._call(_CLOSE, _string(handle))

    def fstat(self, handle: bytes) -> Attrs:
        return self._expect(_ATTRS, _FSTAT, _string(handle)).attrs()

    def stat(self, path: str) -> Attrs:
        return self._expect(_ATTRS, _STAT, _string(path)).attrs()

    def lstat(self, path: str) -> Attrs:
        return self._expect(_ATTRS, _LSTAT, _string(path)).attrs()

    def listdir(self, path: str) -> list[Attrs]:
        """Every entry of a folder but `.` and `..`, with its lstat attributes."""
        handle = self._expect(_HANDLE, _OPENDIR, _string(path)).string()
        entries: list[Attrs] = []
        try:
            while True:
                try:
                    reader = self._expect(_NAME, _READDIR, _string(handle))
                except SFTPError as exc:
                    if exc.code == EOF:
                        break
                    raise
                for _ in range(reader.u32()):
                    name = reader.text()
                    reader.string()  # the `ls -l` line
                    attrs = reader.attrs(name)
                    if name not in (".", ".."):
                        entries.append(attrs)
        finally:
            self.close(handle)
        return entries

    def realpath(self, path: str) -> str:
        reader = self._expect(_NAME, _REALPATH, _string(path))
        if reader.u32() < 1:
            raise ConnectionLost("the SFTP server sent an empty realpath reply")
        return reader.text()

    def mkdir(self, path: str) -> None:
        self._call(_MKDIR, _string(path), _NO_ATTRS)

    def remove(self, path: str) -> None:
        self._call(_REMOVE, _string(path))

    def rename(self, old: str, new: str) -> None:
        """SFTP's rename: fails if `new` exists (OpenSSH does it with link(2), atomically)."""
        self._call(_RENAME, _string(old), _string(new))

    def posix_rename(self, old: str, new: str) -> None:
        """rename(2): replaces `new` atomically. Needs `posix-rename@openssh.com`."""
        self._call(_EXTENDED, _string("posix-rename@openssh.com"), _string(old), _string(new))

    def fsync(self, handle: bytes) -> None:
        """Ask the server to fsync the file. Needs `fsync@openssh.com`."""
        self._call(_EXTENDED, _string("fsync@openssh.com"), _string(handle))

    def statvfs_free(self, path: str) -> int:
        """Bytes available to unprivileged users where `path` lives (`statvfs@openssh.com`)."""
        reply = self._extended("statvfs@openssh.com", _string(path))
        _bsize, frsize, _blocks, _bfree, bavail = (reply.u64() for _ in range(5))
        return bavail * frsize

    # --- pipelined transfers -----------------------------------------------------------------

    def write_file(self, handle: bytes, data: memoryview, *, fsync: bool) -> None:
        """Write `data` at offset 0, fsync (`fsync@openssh.com`) if asked, and close the handle,
        with many requests outstanding: every reply checked, in order. The fsync and the close
        go right after the last write (a server handles requests on one file in the order
        sent, as the protocol requires), so a small file costs one round trip, not three.
        On an error status the handle may still be open: close it (an error is harmless)."""
        chunk = self.write_chunk
        in_flight = max(8, IN_FLIGHT_BYTES // chunk)
        pending: deque[int] = deque()
        encoded = _string(handle)
        offset, total = 0, len(data)
        try:
            while offset < total or pending:
                while offset < total and len(pending) < in_flight:
                    piece = data[offset : offset + chunk]
                    pending.append(
                        self.send(_WRITE, encoded, _U64.pack(offset), _U32.pack(len(piece)), piece)
                    )
                    offset += len(piece)
                    if offset >= total:  # the last write is queued: the rest follows it
                        if fsync:
                            pending.append(
                                self.send(_EXTENDED, _string("fsync@openssh.com"), encoded)
                            )
                        pending.append(self.send(_CLOSE, encoded))
                self.reply(pending[0])  # an error status raises
                pending.popleft()
        except SFTPError:
            self.abandon(list(pending)[1:])
            raise
        if total == 0:
            if fsync:
                self.fsync(handle)
            self.close(handle)

    def close_later(self, handle: bytes) -> None:
        """Close a handle without waiting for the answer (a read handle: nothing to learn)."""
        self.abandon([self.send(_CLOSE, _string(handle))])
        while self._outbuf:
            self._pump(want_reply=False)

    def read_range(self, handle: bytes, offset: int, length: int | None) -> bytes:
        """`length` bytes at `offset` (fewer only at end of file; None: to the end), pipelined.

        A reply may be shorter than asked (a server capping reads): the rest of that piece is
        asked for again. An empty reply or an EOF status marks the end of the file. With no
        length, two requests start (a small file: one round trip) and the window doubles with
        every full reply.
        """
        chunk = self.read_chunk
        encoded = _string(handle)
        end = (1 << 63) if length is None else offset + length
        eof_at = end
        again: deque[tuple[int, int]] = deque()  # the rest of short replies, asked for again
        pending: deque[tuple[int, int, int]] = deque()  # (request, offset, size)
        pieces: dict[int, bytes] = {}
        next_at, full = offset, 0
        most = max(8, IN_FLIGHT_BYTES // chunk)
        while True:
            window = most if length is not None else min(most, 2 + 2 * full)
            while len(pending) < window:
                if again:
                    at, size = again.popleft()
                elif next_at < eof_at:
                    at, size = next_at, min(chunk, eof_at - next_at)
                    next_at += size
                else:
                    break
                if at < eof_at:
                    request = self.send(_READ, encoded, _U64.pack(at), _U32.pack(size))
                    pending.append((request, at, size))
            if not pending:
                break
            request, at, size = pending.popleft()
            try:
                kind, reader = self.reply(request)
            except SFTPError as exc:
                if exc.code != EOF:
                    self.abandon([p[0] for p in pending])
                    raise
                eof_at = min(eof_at, at)
                continue
            if kind != _DATA:
                raise self._fail("the SFTP server answered a read with no data")
            data = reader.string()
            if not data:
                eof_at = min(eof_at, at)
                continue
            pieces[at] = data
            if len(data) < size:
                again.appendleft((at + len(data), size - len(data)))
            else:
                full += 1
        out = bytearray()
        position = offset
        while position in pieces:
            piece = pieces.pop(position)
            out += piece
            position += len(piece)
        return bytes(out)
