"""`dedupe check` end to end, on a small real repository damaged in every way we can think of.

Exit codes when one stored file is damaged (documented here and relied on by the tests):
- a pack, an index file, a snapshot manifest or the config: `check` exits 14 (damage);
- the only key file: every command, check included, exits 12 (the password cannot be verified
  against a damaged key file, and the two cases cannot be told apart without the key).
Restore after damage either fails loudly (non-zero, a message, no traceback) or is bit-exact.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from dedupe.repo import lock as lock_mod
from dedupe.repo.repository import Repository, pack_name
from dedupe.repo.treewalk import find
from tests.clitools import Cli
from tests.support import PASSWORD, assert_same_tree, open_repo


@pytest.fixture
def pristine(tree_snapshot) -> tuple[str, str, str]:
    """(repo, source folder, snapshot id), built once per session (conftest); tests work on
    copies."""
    repo, src, sid = tree_snapshot
    return repo, str(src), sid


@pytest.fixture
def copy(tree_snapshot_copy) -> tuple[Cli, str, str]:
    cli, src, sid = tree_snapshot_copy
    return cli, str(src), sid


def stored_files(repo: str) -> list[str]:
    found = []
    for folder, _dirs, files in os.walk(repo):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), repo)
            # Repository objects only: locks come and go, and other files (a space reserve)
            # hold no data.
            if rel == "config" or rel.split("/")[0] in ("keys", "data", "index", "snapshots"):
                found.append(rel)
    return sorted(found)


def flip(path: str, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0x40]))


def assert_loud(result, codes=(1, 14)) -> None:
    assert result.code in codes, (result.code, result.err)
    assert result.err.strip() and "Traceback" not in result.err


def test_clean_repository(copy):
    cli, _src, _sid = copy
    assert "no errors found" in cli("check").text
    report = cli("check", "--read-data", "--json").json()
    assert report["ok"] is True and report["errors"] == []
    assert report["packs_read"] == report["packs"] >= 1
    assert report["blobs_verified"] == report["blobs"]


def test_read_data_subsets_cover_every_pack_once(copy, tmp_path):
    cli, src, _sid = copy
    for i in range(4):  # more packs: each snapshot of new data writes at least one
        extra = tmp_path / f"extra{i}"
        extra.write_bytes(os.urandom(50_000))
        cli("snapshot", str(extra))
    packs = cli("check", "--json").json()["packs"]
    assert packs >= 5
    read = [cli("check", "--read-data-subset", f"{n}/3", "--json").json() for n in (1, 2, 3)]
    assert sum(r["packs_read"] for r in read) == packs
    assert all(r["ok"] for r in read)
    sample = cli("check", "--read-data-subset", "40%", "--json").json()
    assert sample["packs_read"] == -(-packs * 40 // 100)
    for bad in ("0/3", "4/3", "x", "0%", "150%"):
        assert cli("check", "--read-data-subset", bad, check=False).code == 2


@pytest.mark.parametrize("where", ["middle", "last"])
def test_flip_one_byte_in_each_stored_file(pristine, tmp_path, where):
    repo, src, sid = pristine
    names = stored_files(repo)
    assert any(n.startswith("data/") for n in names) and "config" in names
    for n, name in enumerate(names):
        copy_dir = tmp_path / f"r{n}"
        shutil.copytree(repo, copy_dir)
        path = os.path.join(copy_dir, name)
        size = os.path.getsize(path)
        flip(path, size // 2 if where == "middle" else size - 1)
        cli = Cli(str(copy_dir), str(tmp_path / f"c{n}"))
        result = cli("check", "--read-data", check=False)
        expected = 12 if name.startswith("keys/") else 14
        assert result.code == expected, (name, result.code, result.err)
        assert "Traceback" not in result.err and PASSWORD not in result.err
        target = tmp_path / f"t{n}"
        restored = cli("restore", sid, "--target", str(target), check=False)
        if restored.code == 0:
            assert_same_tree(src, str(target) + src)
        else:
            assert_loud(restored, (1, 12, 14))


def test_damage_names_snapshot_and_files(copy):
    cli, src, sid = copy
    repo = open_repo(cli.repo)
    _path, node = find(repo, repo_tree(repo, sid), src + "/deep/er/est/random.bin")
    loc = repo.locate(node.content[0])
    flip(os.path.join(cli.repo, pack_name(loc.pack_id)), loc.offset + loc.length // 2)
    assert cli("check", check=False).code == 0  # structure is intact: only --read-data sees it
    result = cli("check", "--read-data", check=False)
    assert result.code == 14
    assert sid[:8] in result.err and src + "/deep/er/est/random.bin" in result.err
    assert "failed authentication" in result.err
    report = cli("check", "--read-data", "--json", check=False).json()
    assert report["ok"] is False and report["errors"]
    assert report["damaged_snapshots"][0]["id"] == sid
    assert src + "/deep/er/est/random.bin" in report["damaged_snapshots"][0]["paths"]


def repo_tree(repo: Repository, sid: str) -> bytes:
    from dedupe.repo import manifests

    return manifests.load(repo, sid).tree


def test_restore_and_cat_stop_at_the_bad_chunk(copy, tmp_path):
    cli, src, sid = copy
    repo = open_repo(cli.repo)
    target_file = src + "/deep/er/est/random.bin"
    _path, node = find(repo, repo_tree(repo, sid), target_file)
    loc = repo.locate(node.content[-1])
    flip(os.path.join(cli.repo, pack_name(loc.pack_id)), loc.offset + 30)
    cat = cli("cat", sid, target_file, check=False)
    assert_loud(cat, (14,))
    assert target_file in cat.err
    target = tmp_path / "t"
    restored = cli("restore", sid, "--target", str(target), check=False)
    assert_loud(restored, (14,))
    assert target_file in restored.err
    # The damaged file is not left behind looking complete.
    assert not os.path.exists(str(target) + target_file)


def test_truncated_pack(copy):
    cli, src, sid = copy
    repo = open_repo(cli.repo)
    _path, node = find(repo, repo_tree(repo, sid), src + "/deep/er/est/random.bin")
    path = os.path.join(cli.repo, pack_name(repo.locate(node.content[0]).pack_id))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    result = cli("check", check=False)
    assert result.code == 14 and "header unreadable" in result.err
    assert sid[:8] in result.err and "Traceback" not in result.err
    assert cli("check", "--read-data", check=False).code == 14


def test_deleted_pack(copy, tmp_path):
    cli, src, sid = copy
    repo = open_repo(cli.repo)
    _path, node = find(repo, repo_tree(repo, sid), src + "/plain.txt")
    os.unlink(os.path.join(cli.repo, pack_name(repo.locate(node.content[0]).pack_id)))
    report = cli("check", "--json", check=False).json()
    assert report["ok"] is False and any("is missing" in e for e in report["errors"])
    # plain.txt is named, or a folder above it whose tree was in the same pack.
    paths = report["damaged_snapshots"][0]["paths"]
    wanted = src + "/plain.txt"
    assert any(wanted.startswith(p.removesuffix(" (folder unreadable)").rstrip("/")) for p in paths)
    assert_loud(cli("restore", sid, "--target", str(tmp_path / "t"), check=False), (14,))


def test_deleted_index_file(copy, tmp_path):
    cli, _src, sid = copy
    for name in os.listdir(os.path.join(cli.repo, "index")):
        os.unlink(os.path.join(cli.repo, "index", name))
    result = cli("check", check=False)
    assert result.code == 14
    assert "missing" in result.err and "'dedupe repair index'" in result.err
    assert "named by no index file" in result.err  # the packs are still there: a warning
    assert_loud(cli("restore", sid, "--target", str(tmp_path / "t"), check=False), (14,))


def test_swapped_pack_names(copy, tmp_path):
    cli, src, sid = copy
    packs = [n for n in stored_files(cli.repo) if n.startswith("data/")]
    if len(packs) < 2:
        pytest.skip("the small repository fit in one pack")
    a, b = (os.path.join(cli.repo, p) for p in packs[:2])
    os.rename(a, a + "x")
    os.rename(b, a)
    os.rename(a + "x", b)
    result = cli("check", check=False)
    assert result.code == 14 and "disagree with the pack's header" in result.err
    data = cli("check", "--read-data", check=False)
    assert data.code == 14 and "do not match its name" in data.err
    restored = cli("restore", sid, "--target", str(tmp_path / "t"), check=False)
    if restored.code == 0:
        assert_same_tree(src, str(tmp_path / "t") + src)
    else:
        assert_loud(restored, (14,))


def test_wrong_password_exits_12_without_echo(copy):
    cli, _src, _sid = copy
    secret = "not-the-Password-4711"
    result = cli("check", "--read-data", env={"DEDUPE_PASSWORD": secret}, check=False)
    assert result.code == 12 and secret not in result.err and secret not in result.text


def test_leftovers_are_warnings_not_damage(copy):
    cli, _src, _sid = copy
    repo = open_repo(cli.repo)
    # A stale lock of this host (a pid that is not running) and a temporary file.
    stale = lock_mod.encode_lock(repo.sealer, socket.gethostname(), 2**22 + 7, 1, False)
    repo.storage.put("locks/" + "ab" * 16, stale)
    with open(os.path.join(cli.repo, "data", ".tmp-0123456789abcdef"), "wb") as f:
        f.write(b"half a pack")
    result = cli("check", "--json")
    report = result.json()
    assert report["ok"] is True
    warnings = " ".join(report["warnings"])
    assert "stale" in warnings and "temporary file" in warnings
    # check never modified anything: the leftovers are still there, and no lock of its own.
    assert os.listdir(os.path.join(cli.repo, "locks")) == ["ab" * 16]
    assert os.path.exists(os.path.join(cli.repo, "data", ".tmp-0123456789abcdef"))
