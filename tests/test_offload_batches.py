"""Small files go to the helper process in batches (dedupe.backup.largefiles.submit_small), and
the walk goes on while they are stored: each folder's tree is written once its files are stored
(dedupe.backup.archiver, `_Folder`). The snapshot must be exact whichever process stored what,
in whatever order the folders finished; a file gone before the helper opens it is reported and
left out; a helper that dies fails the snapshot instead of hanging it."""

from __future__ import annotations

import os
import random
import signal

import pytest

from dedupe.backup import archiver as archiver_module
from dedupe.backup import largefiles
from dedupe.backup.archiver import Archiver
from dedupe.backup.largefiles import LargeFiles
from dedupe.backup.offload import Offloader
from dedupe.errors import DedupeError
from dedupe.model.tree import DIR, FILE, SYMLINK, decode_tree
from dedupe.repo.repository import Repository
from dedupe.repo.writer import BlobWriter
from tests.clitools import initialized_cli
from tests.support import digest_tree, files_under, open_repo


def _small_tree(root: str, folders: int, seed: int) -> dict[str, bytes]:
    """Nested folders of 0-3 small files each (some empty), and a symlink: {relative path:
    content}. Every non-empty content is distinct."""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    paths = [""]
    for i in range(folders):
        parent = rng.choice(paths)  # nested to random depths, siblings in between
        folder = os.path.join(parent, f"d{i:03d}")
        paths.append(folder)
        os.makedirs(os.path.join(root, folder))
        for j in range(rng.randint(0, 3)):
            size = 0 if j == 2 else rng.randint(1, 40_000)
            data = rng.randbytes(size)
            files[os.path.join(folder, f"f{j}.txt")] = data
            with open(os.path.join(root, folder, f"f{j}.txt"), "wb") as f:
                f.write(data)
    os.symlink("d000/f0.txt", os.path.join(root, "link"))
    return files


def _stored(repo: Repository, tree: bytes, prefix: str) -> dict[str, bytes]:
    """{path relative to `prefix`: content} of every file in a stored tree."""
    folder = tree
    for part in prefix.strip("/").split("/"):
        node = next(n for n in decode_tree(repo.read_blob(folder)) if n.name == part.encode())
        folder = node.subtree
    out: dict[str, bytes] = {}
    todo = [("", folder)]
    while todo:
        rel, tree_id = todo.pop()
        for node in decode_tree(repo.read_blob(tree_id)):
            path = os.path.join(rel, node.name.decode())
            if node.type == DIR:
                todo.append((path, node.subtree))
            elif node.type == FILE:
                out[path] = b"".join(repo.read_blob(b) for b in node.content)
            else:
                assert node.type == SYMLINK and path == "link"
    return out


def _archive(repo: Repository, src: str, **kwargs) -> tuple[bytes, Archiver, object, list[str]]:
    warnings: list[str] = []
    offload = Offloader(repo)
    with repo.lock(exclusive=False):
        _ = repo.index
        writer = BlobWriter(repo)
        arch = Archiver(writer, repo.chunker(), warn=warnings.append, offload=offload, **kwargs)
        tree = arch.archive_paths([os.fsencode(src)])
        helped = offload.finish()
        assert helped is not None, "the helper never started"
        writer.add_stats(helped[0])
        repo.index_names.extend(helped[1])
        writer.flush()
    return tree, arch, helped[0], warnings


@pytest.mark.parametrize("waiting", [2, 4096])
def test_small_files_in_batches_are_stored_exactly(tmp_path, monkeypatch, waiting):
    """Batches of 7 (so most folders' files straddle two batches), every small file in the
    helper; with 2 folders allowed to wait, the walk keeps waiting for the oldest."""
    monkeypatch.setattr(largefiles, "SMALL_AFTER", 1)
    monkeypatch.setattr(largefiles, "BATCH_FILES", 7)
    monkeypatch.setattr(archiver_module, "MAX_WAITING_FOLDERS", waiting)
    src = str(tmp_path / "src")
    files = _small_tree(src, 120, seed=11)
    cli = initialized_cli(tmp_path)
    repo = open_repo(cli.repo)
    tree, arch, helped, warnings = _archive(repo, src)
    assert not warnings and not arch.stats.errors
    total = sum(len(d) for d in files.values())
    assert arch.stats.files == len(files) and arch.stats.bytes_read == total
    # No file reaches 1 MiB: all the data the helper stored came to it in batches.
    assert helped.raw_bytes_new == total
    assert _stored(open_repo(cli.repo), tree, src) == files


def test_small_file_gone_before_the_helper_opens_it_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(largefiles, "SMALL_AFTER", 1)
    src = str(tmp_path / "src")
    files = _small_tree(src, 40, seed=12)
    doomed = next(p for p, d in sorted(files.items()) if d)
    original = LargeFiles.submit_small

    def listed_then_deleted(self, path, name, st):
        if path == os.fsencode(os.path.join(src, doomed)):
            os.unlink(path)  # gone between the folder listing and the helper's open
        return original(self, path, name, st)

    monkeypatch.setattr(LargeFiles, "submit_small", listed_then_deleted)
    cli = initialized_cli(tmp_path)
    repo = open_repo(cli.repo)
    tree, arch, _helped, warnings = _archive(repo, src)
    assert len(arch.stats.errors) == 1 and doomed in arch.stats.errors[0]
    assert any(doomed in w for w in warnings)
    assert arch.stats.files == len(files) - 1
    del files[doomed]
    assert _stored(open_repo(cli.repo), tree, src) == files


def test_helper_killed_during_a_batch_fails_the_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(largefiles, "SMALL_AFTER", 1)
    src = str(tmp_path / "src")
    _small_tree(src, 60, seed=13)
    cli = initialized_cli(tmp_path)
    repo = open_repo(cli.repo)
    original = Offloader.store_batch

    def kill_then_store(self, items, report, warn):
        os.kill(self.pid, signal.SIGKILL)
        return original(self, items, report, warn)

    monkeypatch.setattr(Offloader, "store_batch", kill_then_store)
    offload = Offloader(repo)
    with repo.lock(exclusive=False):
        writer = BlobWriter(repo)
        arch = Archiver(writer, repo.chunker(), offload=offload)
        with pytest.raises(DedupeError, match="helper process"):
            arch.archive_paths([os.fsencode(src)])
        assert not arch.large_files.running
        offload.abort()
        writer.abort()


def test_snapshot_of_many_small_folders_through_the_cli(tmp_path):
    """More small files than SMALL_AFTER and no large file: the helper stores a share (its own
    index file), the restore is exact, and the rerun reads nothing (the files cache knows the
    helper's files)."""
    src = str(tmp_path / "src")
    files = _small_tree(src, 300, seed=14)
    assert len([d for d in files.values() if d]) > largefiles.SMALL_AFTER
    cli = initialized_cli(tmp_path)
    indexes_before = files_under(os.path.join(cli.repo, "index"))
    snap = cli("snapshot", src, "--json").json()
    assert snap["files"] == len(files) and snap["bytes_total"] == sum(map(len, files.values()))
    assert len(files_under(os.path.join(cli.repo, "index")) - indexes_before) >= 2
    target = tmp_path / "restored"
    cli("restore", snap["id"], "--target", str(target))
    assert digest_tree(str(target) + src) == digest_tree(src)
    assert cli("check", "--read-data", "--json").json()["ok"]
    again = cli("snapshot", src, "--json").json()
    assert again["bytes_read"] == 0 and again["files"] == len(files)
