"""Large files are stored by a helper process (dedupe.backup.offload) during the walk: the
snapshot must be complete and exact, its statistics must include the helper's share, the helper's
index must be durable with the snapshot, and neither its errors nor its death may go unnoticed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest

import dedupe
from dedupe.backup import largefiles
from dedupe.backup import offload as offload_module
from dedupe.backup.archiver import Archiver
from dedupe.backup.largefiles import LargeFiles
from dedupe.backup.offload import Offloader
from dedupe.errors import DedupeError
from dedupe.model.tree import decode_tree
from dedupe.repo.writer import BlobWriter
from tests.clitools import initialized_cli, snapshot_restores_exactly
from tests.support import (
    digest_tree,
    files_under,
    helper_pids,
    open_repo,
    repo_size,
    wait_for_new_file,
)


def _tree(root: str, bigs: int = 2, big_size: int = 9 << 20) -> int:
    rng = random.Random(5)
    total = 0
    for folder in ("", "scans", "docs/2026"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for i in range(20):
            data = rng.randbytes(rng.randint(0, 50_000))
            with open(os.path.join(root, folder, f"note{i}.txt"), "wb") as f:
                f.write(data)
            total += len(data)
    for i in range(bigs):
        data = rng.randbytes(big_size)
        with open(os.path.join(root, "scans", f"scan{i}.bin"), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(ln.startswith("State:") and "Z" in ln.split()[1] for ln in f)
    except OSError:
        return False


def test_helper_loads_the_package_from_the_folder_this_copy_came_from():
    """The helper's command names the `dedupe` package folder (not dedupe/backup): without an
    editable install's import hook, `from dedupe.backup.offload import main` must find it."""
    folder = offload_module.helper_command(3, 4)[4]
    assert os.path.samefile(os.path.join(folder, "backup", "offload.py"), offload_module.__file__)
    assert os.path.samefile(os.path.join(folder, "__init__.py"), dedupe.__file__)


def test_snapshot_with_a_helper_is_exact_and_counts_its_share(tmp_path):
    src = str(tmp_path / "src")
    total = _tree(src)
    cli = initialized_cli(tmp_path)
    before = repo_size(cli.repo)
    indexes_before = files_under(os.path.join(cli.repo, "index"))
    snap = cli("snapshot", src, "--json").json()
    assert snap["files"] == 62 and snap["bytes_total"] == total
    # The helper wrote its own index file beside ours: two new ones for one snapshot.
    new_indexes = files_under(os.path.join(cli.repo, "index")) - indexes_before
    assert len(new_indexes) >= 2, new_indexes
    # Both shares are counted: what the snapshot says it added is what the disk grew by.
    grown = repo_size(cli.repo) - before
    assert abs(snap["bytes_added"] - grown) <= 0.02 * grown, (snap["bytes_added"], grown)
    assert snap["bytes_added"] > 18 << 20  # the two incompressible 9 MiB scans
    target = tmp_path / "restored"
    cli("restore", snap["id"], "--target", str(target))
    assert digest_tree(str(target) + src) == digest_tree(src)
    assert cli("check", "--read-data", "--json").json()["ok"]
    # Unchanged rerun: the files cache covers the helper's files too.
    again = cli("snapshot", src, "--json").json()
    assert again["bytes_read"] == 0 and again["bytes_total"] == total


def test_helper_reports_a_vanished_file_and_the_rest_is_kept(tmp_path, monkeypatch):
    src = str(tmp_path / "src")
    _tree(src, bigs=3)
    cli = initialized_cli(tmp_path)
    doomed = os.path.join(src, "scans", "scan1.bin")
    original = LargeFiles.start

    def listing_then_delete(self, children):
        if any(name == b"scan1.bin" for name, _c, _s in children):
            os.unlink(doomed)  # gone between the folder listing and the helper's open
        return original(self, children)

    monkeypatch.setattr(LargeFiles, "start", listing_then_delete)
    repo = open_repo(cli.repo)
    warnings: list[str] = []
    seen: list[int] = []
    offload = Offloader(repo)
    with repo.lock(exclusive=False):
        _ = repo.index
        writer = BlobWriter(repo)
        arch = Archiver(
            writer,
            repo.chunker(),
            warn=warnings.append,
            progress=lambda b, f: seen.append(b),
            offload=offload,
        )
        tree = arch.archive_paths([os.fsencode(src)])
        stats, names = offload.finish()
        writer.flush()
    assert tree and names and stats.blobs_new > 0
    assert arch.stats.files == 60 + 2
    assert len(arch.stats.errors) == 1 and "scan1.bin" in arch.stats.errors[0]
    assert any("scan1.bin" in w for w in warnings)
    assert seen == sorted(seen) and seen[-1] == arch.stats.bytes_read  # one monotonic total
    assert arch.stats.bytes_read >= 2 * (9 << 20)  # the helper's reads are counted


def test_helper_failure_is_raised_in_the_parent(tmp_path, monkeypatch):
    """A helper that dies mid-file (here: killed) fails the snapshot with a message."""
    src = str(tmp_path / "src")
    _tree(src, bigs=1, big_size=40 << 20)
    cli = initialized_cli(tmp_path)
    repo = open_repo(cli.repo)
    offload = Offloader(repo)
    original_store = Offloader.store

    def store_then_kill(self, path, name, st, report, warn):
        os.kill(self.pid, signal.SIGKILL)
        return original_store(self, path, name, st, report, warn)

    monkeypatch.setattr(Offloader, "store", store_then_kill)
    with repo.lock(exclusive=False):
        writer = BlobWriter(repo)
        arch = Archiver(writer, repo.chunker(), offload=offload)
        with pytest.raises(DedupeError, match="helper process"):
            arch.archive_paths([os.fsencode(src)])
        offload.abort()
        writer.abort()


def test_sigkill_of_the_snapshot_kills_its_helper(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(3)
    for i in range(4):
        (src / f"dump{i}.sql").write_bytes(rng.randbytes(48 << 20))
    cli = initialized_cli(tmp_path)
    packs = os.path.join(cli.repo, "data")
    before = files_under(packs)
    proc = cli.popen("snapshot", str(src), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_new_file(packs, proc, before), "the snapshot ended before a pack"
        helpers = helper_pids(proc.pid)
        assert helpers, "no helper process is storing the large files"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while any(_alive(h) for h in helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(h) for h in helpers), "the helper outlived its snapshot"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The repository is intact: the leftovers are gc's to clean, and a new snapshot works.
    assert cli("check", "--json").json()["ok"]
    snapshot_restores_exactly(cli, src, tmp_path / "restored")
    cli("gc", "--max-unused", "0", "-q")
    assert cli("check", "--read-data", "--json").json()["ok"]


def test_a_helper_that_cannot_start_leaves_the_work_to_this_process(tmp_path, monkeypatch):
    src = str(tmp_path / "src")
    total = _tree(src)
    cli = initialized_cli(tmp_path)

    def no_processes_left(*_args, **_kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("dedupe.backup.offload.subprocess.Popen", no_processes_left)
    repo = open_repo(cli.repo)
    warnings: list[str] = []
    offload = Offloader(repo)
    with repo.lock(exclusive=False):
        writer = BlobWriter(repo)
        arch = Archiver(writer, repo.chunker(), warn=warnings.append, offload=offload)
        tree = arch.archive_paths([os.fsencode(src)])
        assert offload.finish() is None  # it never ran
        writer.flush()
    assert tree and arch.stats.bytes_read == total and not arch.stats.errors
    assert any("cannot start the helper process" in w for w in warnings), warnings


def test_files_beyond_the_helpers_queue_are_stored_here(tmp_path, monkeypatch):
    """While the helper has a full queue, large files go to this process's read-ahead thread;
    every file ends up stored exactly, whichever process stored it."""
    monkeypatch.setattr(largefiles, "OFFLOAD_QUEUE", 1)  # one file at a time in the helper
    monkeypatch.setattr(largefiles, "READ_AHEAD_MIN", 1 << 20)
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(8)
    contents = {f"f{i}.bin": rng.randbytes(3 << 20) for i in range(6)}
    for name, data in contents.items():
        (src / name).write_bytes(data)
    cli = initialized_cli(tmp_path)
    repo = open_repo(cli.repo)
    offload = Offloader(repo)
    with repo.lock(exclusive=False):
        writer = BlobWriter(repo)
        arch = Archiver(writer, repo.chunker(), offload=offload)
        tree = arch.archive_paths([os.fsencode(str(src))])
        helped, _names = offload.finish()
        writer.flush()
    assert helped.raw_bytes_new >= 3 << 20  # the helper stored some files...
    assert writer.stats.raw_bytes_new >= 3 << 20  # ...and this process others
    assert arch.stats.files == 6 and arch.stats.bytes_read == 6 * (3 << 20)
    reopened = open_repo(cli.repo)
    folder = tree
    for part in str(src).strip("/").split("/"):
        node = next(n for n in decode_tree(reopened.read_blob(folder)) if n.name == part.encode())
        folder = node.subtree
    for node in decode_tree(reopened.read_blob(folder)):
        stored = b"".join(reopened.read_blob(b) for b in node.content)
        assert stored == contents[node.name.decode()]
