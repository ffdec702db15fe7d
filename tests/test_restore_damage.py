"""Damage costs only what it touches: a restore goes on past a damaged file or folder listing,
restores everything intact, leaves nothing half-written under a real name, names what it could
not restore and exits 14. The damage is placed exactly: one byte inside one stored blob, found
through the repository's own index (never depending on where chunk boundaries fell)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from dedupe.model.tree import Node
from dedupe.repo import manifests, treewalk
from dedupe.repo.repository import Repository, pack_name
from dedupe.restore.restorer import RestoreIncomplete, Restorer
from tests.clitools import Cli, initialized_cli
from tests.support import digest_tree, open_repo


def make_source(root: Path) -> None:
    """33 files: 32 small ones in two folders and one big file."""
    rng = random.Random(21)
    for folder in ("letters", "scans"):
        (root / folder).mkdir(parents=True)
        for i in range(16):
            (root / folder / f"{folder}-{i:02}.dat").write_bytes(
                rng.randbytes(rng.randint(1, 9000))
            )
    (root / "practice.db").write_bytes(rng.randbytes(6 << 20))


def latest_node(repo_dir: str, path: str) -> tuple[Repository, Node]:
    repo = open_repo(repo_dir)
    _full, node = treewalk.find(repo, manifests.resolve(repo, "latest").tree, path)
    assert node is not None
    return repo, node


def flip_byte_of_blob(repo_dir: str, path: str, blob_index: int | None = None) -> None:
    """Flip one byte in the middle of the stored blob that holds part of `path` in the newest
    snapshot: its content's `blob_index`th chunk, or (None) the folder's own tree listing."""
    repo, node = latest_node(repo_dir, path)
    blob_id = node.subtree if blob_index is None else node.content[blob_index]
    loc = repo.index.lookup(blob_id)
    assert loc is not None
    pack = os.path.join(repo_dir, *pack_name(loc.pack_id).split("/"))
    with open(pack, "r+b") as f:
        f.seek(loc.offset + loc.length // 2)
        byte = f.read(1)
        f.seek(loc.offset + loc.length // 2)
        f.write(bytes([byte[0] ^ 0x01]))


@pytest.fixture
def backed_up(tmp_path) -> tuple[Cli, Path]:
    src = tmp_path / "src"
    make_source(src)
    cli = initialized_cli(tmp_path)
    cli("snapshot", str(src))
    return cli, src


def leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".dedupe-restore-*")]


def test_restore_goes_on_past_a_damaged_file(backed_up, tmp_path):
    cli, src = backed_up
    big = f"{src}/practice.db"
    blobs = len(latest_node(cli.repo, big)[1].content)
    assert blobs >= 2
    flip_byte_of_blob(cli.repo, big, blobs // 2)
    target = tmp_path / "t"
    result = cli("restore", "latest", "--target", str(target), check=False)
    assert result.code == 14, result.err
    assert "Traceback" not in result.err
    assert big in result.err and "damaged" in result.err
    assert "restored 32 of 33 files" in result.err
    restored = Path(str(target) + str(src))
    expected = digest_tree(str(src))
    del expected["practice.db"]
    assert digest_tree(str(restored)) == expected  # the other 32, byte for byte
    assert not (restored / "practice.db").exists()
    assert leftovers(target) == []
    # --json carries the list too.
    again = cli("restore", "latest", "--target", str(tmp_path / "t2"), "--json", check=False)
    assert again.code == 14
    report = again.json()
    assert report["files"] == 32
    assert [(f["path"], f["type"]) for f in report["failed"]] == [(big, "file")]
    # cat: the damaged file exits 14 with a message; an intact one is fine.
    cat = cli("cat", "latest", big, check=False)
    assert cat.code == 14 and "damaged" in cat.err and "Traceback" not in cat.err
    intact = f"{src}/letters/letters-03.dat"
    assert cli("cat", "latest", intact).out == Path(intact).read_bytes()


def test_a_damaged_file_does_not_replace_an_existing_copy(backed_up, tmp_path):
    """Each file is written under a temporary name and renamed into place only when complete:
    restoring over an earlier restore keeps the earlier copy of a file that is now damaged."""
    cli, src = backed_up
    target = tmp_path / "t"
    cli("restore", "latest", "--target", str(target))
    big = f"{src}/practice.db"
    flip_byte_of_blob(cli.repo, big, 0)
    result = cli("restore", "latest", "--target", str(target), "--overwrite", "always", check=False)
    assert result.code == 14, result.err
    restored = Path(str(target) + str(src))
    assert digest_tree(str(restored)) == digest_tree(str(src))
    assert leftovers(target) == []
    # Under the default (if-changed) the copy on disk is recognised as the backup's, by size and
    # time, or with --verify by its content ids: the damaged data is not even read.
    for extra in ([], ["--verify"]):
        again = cli("restore", "latest", "--target", str(target), "--json", *extra)
        assert again.json()["unchanged"] == 33 and again.json()["files"] == 0
        assert digest_tree(str(restored)) == digest_tree(str(src))


def test_verify_with_a_damaged_blob_exits_14_and_checks_the_rest(backed_up, tmp_path):
    cli, src = backed_up
    big = f"{src}/practice.db"
    flip_byte_of_blob(cli.repo, big, 0)
    target = tmp_path / "t"
    result = cli("restore", "latest", "--target", str(target), "--verify", "--json", check=False)
    assert result.code == 14, result.err
    assert "Traceback" not in result.err and big in result.err
    report = result.json()
    assert report["verified"] == report["files"] == 32 and report["mismatched"] == []
    assert [f["path"] for f in report["failed"]] == [big]
    assert not os.path.exists(str(target) + big) and leftovers(target) == []


def test_a_damaged_folder_listing_loses_only_that_folder(backed_up, tmp_path):
    cli, src = backed_up
    flip_byte_of_blob(cli.repo, f"{src}/letters")
    target = tmp_path / "t"
    result = cli("restore", "latest", "--target", str(target), "--json", check=False)
    assert result.code == 14, result.err
    assert f"{src}/letters" in result.err and "Traceback" not in result.err
    restored = Path(str(target) + str(src))
    expected = {k: v for k, v in digest_tree(str(src)).items() if not k.startswith("letters/")}
    assert digest_tree(str(restored)) == expected  # scans/ and the big file
    report = result.json()
    assert report["files"] == 17
    assert [(f["path"], f["type"]) for f in report["failed"]] == [(f"{src}/letters", "dir")]


def test_a_damaged_top_listing_restores_nothing_and_says_so(backed_up, tmp_path):
    cli, src = backed_up
    repo = open_repo(cli.repo)
    root = manifests.resolve(repo, "latest").tree
    loc = repo.index.lookup(root)
    pack = os.path.join(cli.repo, *pack_name(loc.pack_id).split("/"))
    with open(pack, "r+b") as f:
        f.seek(loc.offset + 3)
        byte = f.read(1)
        f.seek(loc.offset + 3)
        f.write(bytes([byte[0] ^ 0x01]))
    result = cli("restore", "latest", "--target", str(tmp_path / "t"), check=False)
    assert result.code == 14, result.err
    assert "Traceback" not in result.err and "damaged" in result.err


def test_the_library_restore_raises_after_restoring_the_intact_files(backed_up, tmp_path):
    """A caller of Restorer that forgets to look at the statistics still cannot miss damage."""
    cli, src = backed_up
    big = f"{src}/practice.db"
    flip_byte_of_blob(cli.repo, big, 0)
    repo, _node = latest_node(cli.repo, big)
    target = tmp_path / "t"
    with pytest.raises(RestoreIncomplete) as raised:
        Restorer(repo, str(target)).restore(manifests.resolve(repo, "latest").tree)
    assert raised.value.stats.files == 32
    assert [path for path, _why in raised.value.stats.damaged_files] == [big]
    assert len(digest_tree(str(target) + str(src))) == 32
