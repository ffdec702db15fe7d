"""The SFTP v3 client (`dedupe.storage.sftpwire`) against OpenSSH's real `sftp-server`, run
directly over pipes (what ssh -s carries): limits, pipelining, errors mid-transfer, a server
that dies, a folder that many pages list."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedupe.storage.sftpwire import CREAT, EXCL, READ, WRITE, ConnectionLost, SFTPError, SFTPSession

SFTP_SERVER = "/usr/lib/openssh/sftp-server"


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[bytes], SFTPSession]]:
    if not os.access(SFTP_SERVER, os.X_OK):
        pytest.skip(f"{SFTP_SERVER} missing (apt-get install openssh-server)")
    proc = subprocess.Popen([SFTP_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    session = SFTPSession(proc.stdout.fileno(), proc.stdin.fileno(), timeout=30)
    session.start()
    try:
        yield proc, session
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def _announced_limits(session: SFTPSession) -> tuple[int, int, int]:
    reply = session._extended("limits@openssh.com")
    return reply.u64(), reply.u64(), reply.u64()


def test_the_servers_limits_are_used_and_respected(server):
    _proc, session = server
    max_packet, max_read, max_write = _announced_limits(session)
    assert max_read > 32768 and max_write > 32768  # OpenSSH 8.6+ allows more than the default
    assert session.read_chunk == min(max_read, max_packet - 1024)
    assert session.write_chunk == min(max_write, max_packet - 1024)
    assert {"posix-rename@openssh.com", "statvfs@openssh.com", "fsync@openssh.com"} <= set(
        session.extensions
    )


def test_pipelined_write_and_ranged_reads(server, tmp_path: Path):
    _proc, session = server
    data = os.urandom(5 * 1024 * 1024 + 12345)
    path = str(tmp_path / "object")
    handle = session.open(path, WRITE | CREAT | EXCL)
    session.write_file(handle, memoryview(data), fsync=True)  # closes the handle too
    assert Path(path).read_bytes() == data
    with pytest.raises(SFTPError):
        session.close(handle)
    empty = str(tmp_path / "empty")
    session.write_file(session.open(empty, WRITE | CREAT | EXCL), memoryview(b""), fsync=True)
    assert Path(empty).read_bytes() == b""
    handle = session.open(path, READ)
    assert session.fstat(handle).st_size == len(data)
    assert session.read_range(handle, 0, len(data)) == data
    assert session.read_range(handle, 0, None) == data  # to the end, size unknown
    assert session.read_range(handle, len(data) - 7, None) == data[-7:]
    assert session.read_range(handle, 1_000_001, 300_000) == data[1_000_001:1_300_001]
    assert session.read_range(handle, len(data) - 10, 1000) == data[-10:]  # short at the end
    assert session.read_range(handle, len(data) + 5, 1000) == b""
    session.close(handle)


def test_error_statuses_are_oserrors_and_the_session_goes_on(server, tmp_path: Path):
    _proc, session = server
    with pytest.raises(SFTPError) as missing:
        session.open(str(tmp_path / "nothing"), READ)
    assert missing.value.errno == errno.ENOENT
    (tmp_path / "taken").write_bytes(b"x")
    with pytest.raises(SFTPError) as taken:
        session.rename(str(tmp_path / "nothing"), str(tmp_path / "taken"))
    assert taken.value.errno == errno.ENOENT
    # A write through a read-only handle fails on its first request while many are in flight:
    # the rest of the replies are dropped when they come, and the next request is answered.
    handle = session.open(str(tmp_path / "taken"), READ)
    with pytest.raises(SFTPError):
        session.write_file(handle, memoryview(b"y" * (4 * 1024 * 1024)), fsync=False)
    with contextlib.suppress(SFTPError):
        session.close(handle)  # the close queued after the writes may have closed it already
    assert session.stat(str(tmp_path / "taken")).st_size == 1
    assert not session.broken


def test_a_folder_listed_over_many_replies(server, tmp_path: Path):
    _proc, session = server
    for i in range(300):  # OpenSSH sends at most 100 names per reply
        (tmp_path / f"f{i:03}").write_bytes(b"z" * i)
    entries = session.listdir(str(tmp_path))
    assert sorted(e.filename for e in entries) == [f"f{i:03}" for i in range(300)]
    assert {e.filename: e.st_size for e in entries}["f123"] == 123
    assert session.realpath(str(tmp_path / "f001" / "..")) == str(tmp_path)
    handle = session.open(str(tmp_path / "f299"), READ)
    assert session.read_range(handle, 0, None) == b"z" * 299
    session.close_later(handle)  # the reply is dropped when it comes; the session goes on
    assert session.stat(str(tmp_path / "f299")).st_size == 299
    assert (session.statvfs_free(str(tmp_path)) or 0) > 0


def test_a_server_that_dies_mid_read_is_connection_lost(server, tmp_path: Path):
    proc, session = server
    path = tmp_path / "big"
    path.write_bytes(os.urandom(16 * 1024 * 1024))
    handle = session.open(str(path), READ)
    proc.kill()
    with pytest.raises(ConnectionLost):
        session.read_range(handle, 0, 16 * 1024 * 1024)
    assert session.broken
