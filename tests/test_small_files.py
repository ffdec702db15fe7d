"""Small files are read whole in one call and cut in memory (the walk's fast path): the chunks
must be exactly those of the streaming path, and a file that grows or shrinks between its stat
and its read is still saved as read, with a warning."""

from __future__ import annotations

import os
import random

import pytest

from dedupe.backup.filestore import ASYNC_MIN, ArchiveStats, FileStore, read_small
from dedupe.chunker import Chunker, ChunkerParams
from dedupe.repo.writer import BlobWriter
from tests.clitools import initialized_cli
from tests.support import open_repo


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 20_000, 100_000, ASYNC_MIN - 1])
def test_cut_in_memory_gives_the_streaming_chunks(size):
    chunker = Chunker(ChunkerParams.for_average(16 * 1024), seed=12345)
    data = random.Random(size).randbytes(size)
    view = memoryview(data)
    pos = 0

    def readinto(buf: memoryview) -> int:
        nonlocal pos
        n = min(len(buf), len(data) - pos)
        buf[:n] = view[pos : pos + n]
        pos += n
        return n

    streamed = [bytes(c) for c in chunker.chunks(readinto, size)]
    cut = [bytes(c) for c in chunker.cut(data)] if data else []
    assert cut == streamed
    assert b"".join(cut) == data
    if size > 40_000:
        assert len(cut) > 1  # it really cut


def test_read_small_reads_whole_shrunk_or_gives_up_on_growth(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert read_small(fd, 1000) == b"x" * 1000
        os.lseek(fd, 0, os.SEEK_SET)
        assert read_small(fd, 1500) == b"x" * 1000  # shrank since its stat
        os.lseek(fd, 0, os.SEEK_SET)
        assert read_small(fd, 600) is None  # grew since its stat
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # back at the start for the streaming path
        assert read_small(fd, ASYNC_MIN) is None  # large: never read whole
    finally:
        os.close(fd)


@pytest.mark.parametrize("change", ["grew", "shrank"])
def test_file_changed_since_its_stat_is_saved_as_read_with_a_warning(tmp_path, change):
    cli = initialized_cli(tmp_path)
    repo = open_repo(cli.repo)
    src = tmp_path / "src"
    src.mkdir()
    path = src / "log.txt"
    path.write_bytes(b"first line\n" * 5000)
    st = os.lstat(path)
    final = b"first line\n" * (9000 if change == "grew" else 100)
    path.write_bytes(final)
    warnings: list[str] = []
    writer = BlobWriter(repo, workers=2)
    files = FileStore(writer, repo.chunker(), warn=warnings.append)
    stats = ArchiveStats()
    node = files.store_now(os.fsencode(path), b"log.txt", st, stats)
    writer.flush()
    assert node is not None and node.size == len(final)
    assert any("changed while it was read" in w for w in warnings), warnings
    assert stats.bytes_read == len(final)
    # The stored content is exactly what was read.
    reopened = open_repo(cli.repo)
    assert b"".join(reopened.read_blob(b) for b in node.content) == final
