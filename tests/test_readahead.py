"""Large files are read on the read-ahead thread while the walk goes on: the snapshot must be
the same as a plain walk's (same tree, same statistics), through the CLI and in process."""

from __future__ import annotations

import os
import random

import pytest

from dedupe.backup import largefiles
from dedupe.backup.archiver import Archiver
from dedupe.backup.largefiles import LargeFiles
from dedupe.repo.writer import BlobWriter
from dedupe.storage.local import LocalStorage
from tests.clitools import initialized_cli
from tests.support import digest_tree, open_repo


def _tree(root: str) -> int:
    """Large files at several depths among small files; returns the bytes written."""
    rng = random.Random(11)
    total = 0
    for folder, bigs in (("", 1), ("a", 2), ("a/b/c", 1), ("z", 0)):
        path = os.path.join(root, folder)
        os.makedirs(path, exist_ok=True)
        for i in range(bigs):
            data = rng.randbytes(3 << 20) * 3  # 9 MiB: read ahead, and it dedupes within
            with open(os.path.join(path, f"big{i}.bin"), "wb") as f:
                f.write(data)
            total += len(data)
        for i in range(30):
            data = f"row {i} of {folder}\n".encode() * rng.randint(1, 300)
            with open(os.path.join(path, f"small{i:02}.txt"), "wb") as f:
                f.write(data)
            total += len(data)
    return total


def test_snapshot_with_read_ahead_restores_and_counts_everything(tmp_path):
    src = str(tmp_path / "src")
    total = _tree(src)
    cli = initialized_cli(tmp_path)
    first = cli("snapshot", src, "--json").json()
    assert first["files"] == 4 * 30 + 4
    assert first["bytes_total"] == total and first["bytes_read"] == total
    target = tmp_path / "restored"
    cli("restore", first["id"], "--target", str(target))
    assert digest_tree(str(target) + src) == digest_tree(src)
    # Unchanged rerun: nothing read, the same tree, the same counts.
    again = cli("snapshot", src, "--json").json()
    assert again["bytes_read"] == 0 and again["files"] == first["files"]
    assert again["bytes_total"] == total
    # One large file changes: only it is read again, and the new snapshot restores exactly.
    with open(os.path.join(src, "a", "b", "c", "big0.bin"), "r+b") as f:
        f.seek(5 << 20)
        f.write(b"edited")
    third = cli("snapshot", src, "--json").json()
    assert third["bytes_read"] == 9 << 20
    target = tmp_path / "restored3"
    cli("restore", third["id"], "--target", str(target))
    assert digest_tree(str(target) + src) == digest_tree(src)
    assert cli("check", "--read-data", "--json").json()["ok"]


def test_read_ahead_file_vanishing_is_reported_and_others_are_kept(tmp_path, monkeypatch):
    src = str(tmp_path / "src")
    _tree(src)
    cli = initialized_cli(tmp_path)
    monkeypatch.setattr(largefiles, "READ_AHEAD_MIN", 1)  # every file goes ahead
    doomed = os.path.join(src, "a", "big1.bin")
    original = LargeFiles.start

    def listing_then_delete(self, children):
        if any(name == b"big1.bin" for name, _c, _s in children):
            os.unlink(doomed)  # gone between the folder listing and the read
        return original(self, children)

    monkeypatch.setattr(LargeFiles, "start", listing_then_delete)
    repo = open_repo(cli.repo)
    warnings: list[str] = []
    seen: list[int] = []
    with repo.lock(exclusive=False):
        writer = BlobWriter(repo)
        arch = Archiver(
            writer, repo.chunker(), warn=warnings.append, progress=lambda b, f: seen.append(b)
        )
        tree = arch.archive_paths([os.fsencode(src)])
        writer.flush()
    assert tree and not arch.large_files.running  # the read-ahead thread is gone
    assert arch.stats.files == 4 * 30 + 3
    assert len(arch.stats.errors) == 1 and "big1.bin" in arch.stats.errors[0]
    assert any("big1.bin" in w for w in warnings)
    assert seen == sorted(seen) and seen[-1] == arch.stats.bytes_read  # one monotonic total


def test_a_failing_writer_stops_the_walk_and_the_read_ahead(tmp_path, monkeypatch):
    src = str(tmp_path / "src")
    _tree(src)
    cli = initialized_cli(tmp_path)
    repo = open_repo(cli.repo)

    real_put = LocalStorage.put

    def broken_put(self, name, data):
        if name.startswith("data/"):
            raise OSError(28, "No space left on device")
        return real_put(self, name, data)

    monkeypatch.setattr(LocalStorage, "put", broken_put)
    with repo.lock(exclusive=False):
        writer = BlobWriter(repo)
        arch = Archiver(writer, repo.chunker())
        with pytest.raises(Exception) as info:
            arch.archive_paths([os.fsencode(src)])
            writer.flush()
        writer.abort()
    assert "No space" in str(info.value) or "space" in str(info.value).lower()
    assert not arch.large_files.running
