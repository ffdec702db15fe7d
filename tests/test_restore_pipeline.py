"""The restore's data path (`dedupe.restore.pipeline`): blobs are written into their files by the
worker threads at computed offsets. Through the real CLI on real folders: every byte lands
where it belongs (shared blobs, repeated chunks, empty files, more files than the pipeline keeps
open at once), and a disk that fills up mid-restore leaves no temporary file and no partial file
under a real name."""

from __future__ import annotations

import os
import random
from pathlib import Path

from dedupe.errors import OutOfSpace
from dedupe.restore import pipeline
from tests.clitools import Cli
from tests.support import assert_stopped_restore_is_clean, digest_tree


def _tree(src: Path) -> None:
    rng = random.Random(17)
    many = src / "many"
    many.mkdir(parents=True)
    for i in range(pipeline.MAX_OPEN + 44):  # more files than may be open at once
        (many / f"f{i:03}.txt").write_bytes(f"file {i}\n".encode() * rng.randint(1, 400))
    (many / "empty").write_bytes(b"")
    shared = rng.randbytes(300_000)
    for name in ("a.bin", "b.bin"):  # the same blobs in two files
        (src / name).write_bytes(shared)
    block = rng.randbytes(3 << 20)
    (src / "repeated.bin").write_bytes(block * 3 + b"tail")  # one chunk at several offsets
    os.symlink("a.bin", src / "link")


def test_every_blob_lands_at_its_offset_in_every_file(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    sid = cli("snapshot", str(src), "--json").json()["id"]
    target = tmp_path / "out"
    cli("restore", sid, "--target", str(target))
    assert digest_tree(str(target) + str(src)) == digest_tree(str(src))
    assert os.readlink(str(target) + str(src / "link")) == "a.bin"
    restored = Path(str(target) + str(src))
    assert (
        os.stat(restored / "repeated.bin").st_mtime_ns == os.stat(src / "repeated.bin").st_mtime_ns
    )
    # Only the dump-like file, by its path: nothing else is created.
    alone = tmp_path / "alone"
    cli("restore", sid, "--target", str(alone), "--include", str(src / "repeated.bin"))
    assert digest_tree(str(alone)) == {
        str(src / "repeated.bin").lstrip("/"): digest_tree(str(src))["repeated.bin"]
    }


def test_a_full_disk_leaves_no_partial_or_temporary_file(
    cli: Cli, tmp_path: Path, small_disk: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    for i in range(6):  # 96 MiB of incompressible files onto a 64 MiB disk
        (src / f"scan{i}.pdf").write_bytes(rng.randbytes(16 << 20))
    sid = cli("snapshot", str(src), "--json").json()["id"]
    result = cli("restore", sid, "--target", str(small_disk / "out"), check=False)
    assert result.code == OutOfSpace.exit_code, result.err
    assert "out of disk space" in result.err
    assert_stopped_restore_is_clean(src, small_disk / "out", scan=small_disk)
