"""A restore of many small files and folders (`dedupe.restore.pipeline`: the worker pool writes
every blob, the main thread makes files and folders): a tree wide and deep comes back with every
byte, mode, owner and time, folder times included (set after their content), with more folders
than may wait for their times at once; an error in a worker (a full disk while small files are
written) stops the restore with the out-of-space exit, leaves no temporary file, nothing
incomplete under a real name, and no descriptor open."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from dedupe.errors import DedupeError, OutOfSpace
from dedupe.repo.manifests import load_all
from dedupe.restore import pipeline
from dedupe.restore.restorer import Restorer
from tests.clitools import Cli
from tests.support import assert_same_tree, assert_stopped_restore_is_clean, open_repo


def _small_tree(src: Path, folders: int, files_per_folder: int, seed: int) -> None:
    """`folders` folders (some nested, some empty, some read-only) of small files."""
    rng = random.Random(seed)
    for i in range(folders):
        folder = src / f"p{i:04}" / ("visits" if i % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(files_per_folder if i % 7 else 0):  # every 7th folder stays empty
            name = folder / f"note{j}.txt"
            name.write_bytes(f"visit {i}/{j}\n".encode() * rng.randint(0, 300))
            os.utime(name, ns=(1_600_000_000_000_000_000 + i * 1000 + j,) * 2)
        if i % 11 == 0:
            os.chmod(folder, 0o555)  # its files are renamed in before its mode is set
        if i % 5 == 0:
            os.chown(folder, 1000 + i, 1000)
        os.utime(folder, ns=(1_500_000_000_000_000_000 + i,) * 2)
    # A deep chain of 40 folders: each folder's time is set after everything inside it.
    deep = src / "deep"
    for level in range(40):
        deep = deep / f"l{level}"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_bytes(b"at the bottom\n")
    (src / "empty-file").write_bytes(b"")
    (src / "big.bin").write_bytes(rng.randbytes(12 << 20))  # a file written by several tasks


def test_many_small_files_and_folders_come_back_exactly(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    # More folders than may wait for their times at once, and thousands of files.
    _small_tree(src, folders=pipeline.MAX_OPEN + 60, files_per_folder=20, seed=3)
    assert sum(len(files) for _d, _s, files in os.walk(src)) > 4096
    sid = cli("snapshot", str(src), "--json").json()["id"]
    target = tmp_path / "out"
    result = cli("restore", sid, "--target", str(target), "--json")
    report = result.json()
    restored = str(target) + str(src)
    assert_same_tree(str(src), restored)
    folders = sum(len(dirs) for _d, dirs, _f in os.walk(src)) + 1
    above = len(src.parent.parts) - 1  # the snapshot's path to src: /tmp/...
    assert report["dirs"] == folders + above
    assert report["files"] == sum(len(files) for _d, _s, files in os.walk(src))
    leftovers = [
        name
        for _folder, _dirs, names in os.walk(target)
        for name in names
        if name.startswith(".dedupe-restore-")
    ]
    assert leftovers == []


def _open_fds() -> dict[int, str]:
    """This process's open descriptors and what each is (the listing's own is gone)."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
    return out


def test_a_full_disk_while_tasks_make_small_files_stops_cleanly(
    cli: Cli, tmp_path: Path, small_disk: Path
) -> None:
    src = tmp_path / "src"
    rng = random.Random(9)
    for i in range(120):  # 96 MiB of incompressible 800 KB files (each whole) onto 64 MiB
        folder = src / f"scans{i % 12}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"scan{i}.jpg").write_bytes(rng.randbytes(800_000))
    sid = cli("snapshot", str(src), "--json").json()["id"]
    result = cli("restore", sid, "--target", str(small_disk / "cli"), check=False)
    assert result.code == OutOfSpace.exit_code, result.err
    assert "out of disk space" in result.err
    assert "Traceback" not in result.err

    assert assert_stopped_restore_is_clean(src, small_disk / "cli")
    subprocess.run(["rm", "-rf", str(small_disk / "cli")], check=True)

    # The same in-process: every descriptor the restore opened is closed again.
    repo = open_repo(cli.repo)
    (snap,) = (s for s in load_all(repo) if s.id == sid)
    before = _open_fds()
    with pytest.raises((OSError, DedupeError)) as raised:
        Restorer(repo, str(small_disk / "lib")).restore(snap.tree)
    assert "No space left" in str(raised.value)
    # (The storage keeps pack files open for later reads: those are the repository's. An
    # earlier test's storage may be collected meanwhile and close its own: gone is fine, new
    # is not.)
    left = {fd: what for fd, what in _open_fds().items() if not what.startswith(cli.repo)}
    assert {fd: what for fd, what in left.items() if before.get(fd) != what} == {}
    assert not any(what.startswith(str(small_disk)) for what in left.values())
    assert assert_stopped_restore_is_clean(src, small_disk / "lib")
