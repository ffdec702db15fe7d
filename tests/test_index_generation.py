"""Index generations and the floor (`dedupe.repo.indexfile.judge`): an old index file put back into
index/ (from an old copy of the folder) counts for nothing, through the real CLI with and
without the local index cache; a snapshot can tell that a gc ran since it loaded the index."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from dedupe.crypto.seal import content_hash
from dedupe.repo.index import Generation, decode_index, encode_index, judge
from dedupe.repo.repository import Repository
from dedupe.repo.writer import BlobWriter
from dedupe.storage.local import LocalStorage
from tests.clitools import CachedCli, Cli
from tests.support import digest_tree, open_repo


def index_folder(cli: Cli) -> Path:
    return Path(cli.repo) / "index"


def write_files(folder: Path, seed: int, count: int = 5) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"f{i}.bin").write_bytes(rng.randbytes(rng.randint(150_000, 400_000)))


# --- the pure rule ----------------------------------------------------------------------------


def test_judge_skips_superseded_and_below_the_floor():
    a, b, c, d, e = (ch * 64 for ch in "abcde")
    files = {
        a: Generation(0, 0),  # an old-format file, replaced by gc's c
        b: Generation(1, 0),  # a file of an interrupted gc, replaced too
        c: Generation(2, 2, (a, b)),  # gc's last file: floor 2, supersedes what it replaced
        d: Generation(2, 2),  # a snapshot after that gc
        e: Generation(1, 1, (d,)),  # put back from an old copy: its supersedes counts for nothing
    }
    verdict = judge(files)
    assert verdict.floor == 2 and verdict.top == 2
    assert verdict.current == [c, d]
    assert verdict.superseded == {a, b} and verdict.put_back == {e}
    assert judge({}).floor == 0 and judge({}).current == []
    # Files of the first format (no generation) are all current, as before.
    assert judge({a: Generation(), b: Generation(0, 0, (a,))}).current == [b]


# --- through the real CLI ---------------------------------------------------------------------


def put_back_after_gc(cli: Cli, tmp_path: Path) -> tuple[Path, set[str]]:
    """Snapshot A (forgotten) and K (kept); save index/; forget A; gc deletes A's packs and
    rewrites the index; a second gc (of another forgotten snapshot) rewrites it again, so no
    index file names A's old index files any more. Then every index file from before the first
    gc is put back. Returns A's folder and the names put back."""
    cli("init")
    src, other, temp = tmp_path / "src", tmp_path / "other", tmp_path / "temp"
    write_files(src, 1)
    write_files(other, 2, count=2)
    write_files(temp, 3, count=2)
    cli("snapshot", str(src), "--tag", "old", "-q")
    cli("snapshot", str(other), "--tag", "keep", "-q")
    saved = tmp_path / "index-copy"
    shutil.copytree(index_folder(cli), saved)
    for folder in (src, temp):
        if folder == temp:
            cli("snapshot", str(temp), "-q")
        cli("forget", "--keep-tag", "keep", "-q")
        gc = cli("gc", "--max-unused", "0", "--json").json()
        assert gc["freed_bytes"] > 0 and gc["index_files_deleted"] >= 1
    return src, put_back(cli, saved)


def put_back(cli: Cli, saved: Path) -> set[str]:
    present = set(os.listdir(index_folder(cli)))
    names = set(os.listdir(saved)) - present
    assert names  # gc removed them: these are the files that named A's packs
    for name in names:
        shutil.copy2(saved / name, index_folder(cli) / name)
    return names


def snapshot_restores_and_check_passes(cli: Cli, tmp_path: Path, src: Path, put: set[str]):
    snap = cli("snapshot", str(src), "--json").json()
    # A put-back file trusted would make this snapshot store nothing (every chunk "present").
    assert snap["bytes_added"] >= sum(p.stat().st_size for p in src.iterdir()) // 2
    out = tmp_path / "restored"
    cli("restore", snap["id"], "--target", str(out))
    assert digest_tree(str(out) + str(src)) == digest_tree(str(src))
    check = cli("check", "--read-data", "--json", check=False)
    assert check.code == 0, check.text + check.err
    for name in put:
        assert f"index file {name[:16]} is older than the current index" in check.err
        assert "'dedupe gc' removes it" in check.err
    cli("gc", "-q")
    assert not put & set(os.listdir(index_folder(cli)))  # gc deleted them
    assert cli("check", "--json").json()["ok"]


def test_put_back_index_file_is_ignored(tmp_path):
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    src, put = put_back_after_gc(cli, tmp_path)
    snapshot_restores_and_check_passes(cli, tmp_path, src, put)


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_put_back_index_file_is_ignored_with_the_index_cache(tmp_path, cache):
    """warm: the cache already covers gc's index when the old file comes back (it is a new file
    next to the cache); cold: the cache is built with the old file listed."""
    cli = CachedCli(tmp_path)
    src, put = put_back_after_gc(cli, tmp_path)
    table = cli.cache_table()
    if cache == "warm":
        # Load the index as gc left it (the cache then covers gc's file) before the put-back.
        # (`ls`, not a snapshot: a snapshot would save the files cache, a confound here.)
        for name in put:
            os.rename(index_folder(cli) / name, tmp_path / name)
        cli("ls", "latest")
        table = cli.cache_table()
        assert table is not None and table.floor >= 1 and not put & table.covered
        for name in put:
            os.rename(tmp_path / name, index_folder(cli) / name)
    else:
        shutil.rmtree(os.path.dirname(cli.cache_file()))
    snapshot_restores_and_check_passes(cli, tmp_path, src, put)
    table = cli.cache_table()
    assert table is not None and not put & table.covered


# --- the library: what a snapshot asks before it commits ------------------------------------


def test_index_changed_since_load_sees_a_gc(tmp_path, cheap_kdf):
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    src, _put = put_back_after_gc(cli, tmp_path)
    os.unlink(index_folder(cli) / sorted(_put)[0])
    repo = open_repo(cli.repo)
    _ = repo.index
    floor = repo.index_floor
    assert floor >= 1 and repo.current_index_floor() == floor
    # This process's own files, and another snapshot's, change nothing.
    writer = BlobWriter(repo)
    writer.add(os.urandom(5000))
    writer.flush()
    other = open_repo(cli.repo)
    writer = BlobWriter(other)
    writer.add(os.urandom(5000))
    writer.flush()
    written = decode_index(other.storage.get(f"index/{other.index_names[-1]}"), other.sealer, "x")
    assert (written.gen, written.floor) == (floor, floor)
    assert repo.current_index_floor() == floor and not repo.index_changed_since_load()
    cli("gc", "-q")  # replaces the whole index: a higher floor
    assert repo.current_index_floor() > floor and repo.index_changed_since_load()
    assert repo.index_floor == floor  # what this process loaded stays what it loaded


def test_a_repack_only_gc_shows_too(tmp_path, cheap_kdf):
    """A gc that only repacks replaces some files: it cannot raise the floor, but its files
    carry a higher generation than any snapshot writes at this floor."""
    repo = Repository.init(LocalStorage(str(tmp_path / "repo")), b"pw", 64 * 1024, "zstd:3")
    repo.cache_dir = None
    writer = BlobWriter(repo)
    writer.add(os.urandom(5000))
    writer.flush()
    assert repo.index_floor == 0 and not repo.index_changed_since_load()
    other = Repository.open(repo.storage, lambda: b"pw")
    other.cache_dir = None
    index_file = decode_index(other.storage.get(f"index/{repo.index_names[0]}"), other.sealer, "x")
    repack = encode_index(index_file.packs, [repo.index_names[0]], other.sealer, gen=1, floor=0)
    other.storage.put(f"index/{content_hash(repack).hex()}", repack)
    assert repo.current_index_floor() == 0 and repo.index_changed_since_load()
