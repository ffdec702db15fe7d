"""The files and folder cache: fast unchanged reruns that never hide a change or a gc."""

from __future__ import annotations

import os
import random

from tests.clitools import initialized_cli
from tests.support import assert_same_tree, repo_size


def build(src) -> None:
    rng = random.Random(11)
    for d in range(5):
        folder = src / f"patient{d}" / "letters"
        folder.mkdir(parents=True)
        for i in range(4):
            (folder / f"letter{i}.txt").write_bytes(rng.randbytes(3000))


def test_unchanged_rerun_uses_cache_and_sees_quiet_edits(tmp_path):
    cli = initialized_cli(tmp_path)
    src = tmp_path / "src"
    build(src)
    first = cli("snapshot", str(src), "--json").json()
    assert first["bytes_read"] > 0
    second = cli("snapshot", str(src), "--json").json()
    assert second["bytes_read"] == 0 and second["files"] == first["files"]
    # Same size, same mtime, new content: only ctime tells. It must be seen.
    target = src / "patient3" / "letters" / "letter2.txt"
    st = target.stat()
    target.write_bytes(b"X" * st.st_size)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = cli("snapshot", str(src), "--json").json()
    assert third["bytes_read"] == st.st_size
    out = tmp_path / "out"
    cli("restore", third["id"], "--target", str(out))
    assert_same_tree(str(src), str(out) + str(src))


def test_cache_after_forget_and_gc_never_references_deleted_chunks(tmp_path):
    """borg#9748: a cache older than a gc must not make a snapshot reference deleted data."""
    cli = initialized_cli(tmp_path)
    src = tmp_path / "src"
    build(src)
    old = cli("snapshot", str(src), "--json", "--tag", "old").json()
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("unrelated")
    cli("snapshot", str(other), "--tag", "keep")
    # Forget src's snapshot (only the tagged one is kept), and let gc delete its data.
    forgotten = cli("forget", "--keep-tag", "keep", "--json").json()
    assert [r["id"] for r in forgotten["remove"]] == [old["id"]]
    size_before = repo_size(cli.repo)
    cli("gc", "--max-unused", "0")
    assert repo_size(cli.repo) < size_before - 40_000
    again = cli("snapshot", str(src), "--json").json()
    assert again["bytes_read"] > 0  # the cache was not trusted: data was read and stored anew
    out = tmp_path / "out"
    cli("restore", again["id"], "--target", str(out))
    assert_same_tree(str(src), str(out) + str(src))
    assert cli("check", "--read-data", check=False).code == 0


def test_untrusted_cache_carries_no_unverified_entry_into_a_trusted_one(tmp_path):
    """After a gc, a snapshot of another folder must not carry src's old entries forward under
    the new index names: the next snapshot of src would trust them and reference deleted data
    (it exited 0 and check found the missing blobs)."""
    cli = initialized_cli(tmp_path)
    src = tmp_path / "src"
    build(src)
    cli("snapshot", str(src), "--tag", "old")
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("unrelated")
    cli("snapshot", str(other), "--tag", "keep")
    cli("forget", "--keep-tag", "keep")
    cli("gc", "--max-unused", "0")
    cli("snapshot", str(other), "--tag", "keep")  # untrusted run: it saves the cache anew
    again = cli("snapshot", str(src), "--json").json()
    assert again["bytes_read"] > 0  # src's data is gone: it must be read and stored again
    assert cli("check", "--read-data", check=False).code == 0
    out = tmp_path / "out"
    cli("restore", again["id"], "--target", str(out))
    assert_same_tree(str(src), str(out) + str(src))
