"""The local index cache through the real CLI: a cache older than a gc never makes a snapshot
skip a chunk gc deleted (borg#9748), a damaged cache costs nothing but time, and concurrent
snapshots share one cache folder.

The CLI caches only indexes of a few MiB and more; these tests run it through a tiny entry
script that lowers that threshold, so small repositories use the cache too.
"""

from __future__ import annotations

import os
import random
import subprocess

from dedupe.repo import indexcache
from tests.clitools import CachedCli
from tests.support import assert_same_tree, open_repo


def build(src, seed: int, files: int = 6) -> int:
    rng = random.Random(seed)
    src.mkdir(parents=True)
    total = 0
    for i in range(files):
        data = rng.randbytes(rng.randint(100_000, 300_000))
        (src / f"file{i}.bin").write_bytes(data)
        total += len(data)
    return total


def test_cache_older_than_gc_never_skips_a_deleted_chunk(tmp_path):
    cli = CachedCli(tmp_path)
    cli("init")
    src, other = tmp_path / "src", tmp_path / "other"
    size = build(src, 1)
    build(other, 2, files=2)
    cli("snapshot", str(src), "--tag", "old")
    cli("snapshot", str(other), "--tag", "keep")  # folds the first snapshot's index in
    before = cli.cache_table()
    assert before is not None and len(before) > 6  # at least a chunk of every file
    cli("forget", "--keep-tag", "keep")
    cli("gc", "--max-unused", "0")  # deletes every chunk of src
    again = cli("snapshot", str(src), "--json").json()
    assert again["bytes_read"] == size and again["bytes_added"] >= size
    after = cli.cache_table()
    assert after is not None and not after.covered & before.covered  # rebuilt, not reused
    out = tmp_path / "out"
    cli("restore", again["id"], "--target", str(out))
    assert_same_tree(str(src), str(out) + str(src))
    assert cli("check", "--read-data", check=False).code == 0


def test_damaged_or_truncated_cache_costs_only_time(tmp_path):
    cli = CachedCli(tmp_path)
    cli("init")
    src = tmp_path / "src"
    build(src, 3)
    cli("snapshot", str(src))
    cli("snapshot", str(src))  # the cache now holds the first snapshot's entries
    path = cli.cache_file()
    for n, where in enumerate((0.5, 0.75, 0.99, None)):
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            if where is None:
                f.truncate(size // 3)
            else:
                f.seek(int(size * where))
                byte = f.read(1)
                f.seek(int(size * where))
                f.write(bytes([byte[0] ^ 0x10]))
        (src / f"new{n}").write_bytes(random.Random(n).randbytes(50_000))
        snap = cli("snapshot", str(src), "--json")
        assert "Traceback" not in snap.err
        out = tmp_path / f"out{n}"
        cli("restore", snap.json()["id"], "--target", str(out))
        assert_same_tree(str(src), str(out) + str(src))
        assert cli.cache_table() is not None  # rebuilt (or still whole where nothing was read)
    assert cli("check", "--read-data", check=False).code == 0


def test_concurrent_snapshots_build_the_cache_together(tmp_path):
    cli = CachedCli(tmp_path)
    cli("init")
    first, second = tmp_path / "a", tmp_path / "b"
    build(first, 4)
    build(second, 5)
    cli("snapshot", str(first))
    os.unlink(cli.cache_file())
    procs = [
        cli.popen("snapshot", str(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for folder in (first, second)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    folder = os.path.dirname(cli.cache_file())
    # The cache file, no temporary left behind (other caches may share the folder).
    listed = os.listdir(folder)
    assert "index" in listed and not [n for n in listed if n.endswith(".tmp")], listed
    repo = open_repo(cli.repo)
    repo.cache_dir = cli.env["DEDUPE_CACHE_DIR"]
    key = indexcache.cache_key(repo.key.enc_key, repo.key.id_key, repo.key.repo_id)
    assert indexcache.IndexCache(folder, key, repo.key.repo_id).open() is not None
    assert cli("check", "--read-data", check=False).code == 0
    for snap in cli("snapshots", "--json").json():
        out = tmp_path / snap["id"]
        cli("restore", snap["id"], "--target", str(out))
