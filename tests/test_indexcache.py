"""The local index cache (dedupe.repo.indexcache) through the library, on real files: hits,
misses, the delta of newer index files, rewrites, staleness after gc, damage and concurrency."""

from __future__ import annotations

import os
import random
import threading

import numpy as np
import pytest

from benchmarks.index_scale import write_fake_index
from dedupe.crypto.seal import content_hash
from dedupe.gc import collect
from dedupe.repo import cacheformat, indexcache
from dedupe.repo.index import ChunkIndex, IndexFile, PackColumns, encode_index
from dedupe.repo.pack import BlobEntry
from dedupe.repo.repository import GC_PENDING, Repository
from dedupe.repo.writer import BlobWriter
from dedupe.storage.local import LocalStorage
from tests.support import PASSWORD, open_repo


@pytest.fixture(autouse=True)
def small_repositories_cached(monkeypatch, cheap_kdf):
    monkeypatch.setattr(indexcache, "MIN_INDEX_BYTES", 0)


@pytest.fixture
def repo_path(tmp_path) -> str:
    path = str(tmp_path / "repo")
    repo = Repository.init(LocalStorage(path), PASSWORD.encode(), 64 * 1024, "zstd:3")
    write_fake_index(repo, 5000, files=3, per_pack=100, seed=1)
    return path


def cache_file(repo: Repository) -> str:
    return os.path.join(repo.cache_dir, repo.settings.repo_id.hex(), indexcache.CACHE_NAME)


def truth(path: str) -> dict:
    """The index as the repository's own files say, without any cache."""
    return dict(open_repo(path, None).load_index().items())


def fake_pack(rng: random.Random, count: int) -> tuple[bytes, list[BlobEntry]]:
    return rng.randbytes(32), [BlobEntry(rng.randbytes(32), 100 * i, 90, 200) for i in range(count)]


def test_cold_build_then_warm_hit_match_the_index_files(repo_path, tmp_path):
    expected = truth(repo_path)
    cold = open_repo(repo_path, str(tmp_path / "cache"))
    index = cold.load_index()
    assert isinstance(index.base, indexcache.CacheTable) and len(index.base) == 5000
    path = cache_file(cold)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    built = os.stat(path)
    warm = open_repo(repo_path, str(tmp_path / "cache"))
    index = warm.load_index()
    assert os.stat(path).st_ino == built.st_ino  # used as it is, not rebuilt
    assert len(index) == len(expected) and dict(index.items()) == expected
    for blob_id, location in random.Random(2).sample(sorted(expected.items()), 300):
        assert blob_id in index and index.lookup(blob_id) == location
    assert bytes(32) not in index and index.lookup(os.urandom(32)) is None
    plain = open_repo(repo_path, None)
    plain.load_index()
    assert sorted(warm.index_names) == sorted(plain.index_names)


def test_small_index_or_no_cache_dir_leaves_no_file(repo_path, tmp_path, monkeypatch):
    repo = open_repo(repo_path, None)
    assert repo.load_index().base is None
    monkeypatch.setattr(indexcache, "MIN_INDEX_BYTES", 1 << 40)
    repo = open_repo(repo_path, str(tmp_path / "cache"))
    assert repo.load_index().base is None and not os.path.exists(tmp_path / "cache")


def test_newer_index_files_are_a_delta_then_rewritten(repo_path, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    first = open_repo(repo_path, cache)
    first.load_index()
    built = os.stat(cache_file(first)).st_ino
    rng = random.Random(3)
    new_packs = [fake_pack(rng, 50) for _ in range(4)]
    name, _size = first.write_index(new_packs)
    # a blob the cache knows, named again by the newer file: it stays the cache's
    known_id, known_loc = next(iter(first.index.items()))
    first.write_index([(rng.randbytes(32), [BlobEntry(known_id, 7, 77, 777)])])

    second = open_repo(repo_path, cache)
    index = second.load_index()
    assert os.stat(cache_file(second)).st_ino == built
    assert name in second.index_names
    assert len(index) == 5000 + 200 and index.lookup(known_id) == known_loc
    assert dict(index.items()) == truth(repo_path) | {known_id: known_loc}
    for pack_id, entries in new_packs:
        assert index.lookup(entries[0].blob_id).pack_id == pack_id

    monkeypatch.setattr(indexcache, "REWRITE_ROWS", 100)
    third = open_repo(repo_path, cache)
    index = third.load_index()
    assert os.stat(cache_file(third)).st_ino != built
    assert len(index.own_entries()[0]) == 0 and len(index.base) == 5200
    assert index.lookup(new_packs[2][1][9].blob_id).pack_id == new_packs[2][0]
    fourth = open_repo(repo_path, cache)
    assert fourth.load_index().base.covered == set(fourth.index_names)


def test_writer_added_entries_are_found_and_len_is_exact(repo_path, tmp_path):
    repo = open_repo(repo_path, str(tmp_path / "cache"))
    index = repo.index
    pack_id, entries = fake_pack(random.Random(4), 30)
    known_id = next(iter(index.items()))[0]
    index.add_pack(pack_id, [*entries, BlobEntry(known_id, 1, 41, 1)])
    assert len(index) == 5030 and index.lookup(entries[5].blob_id).offset == 500
    index.merge()
    assert len(index) == 5030 and index.lookup(known_id).pack_id != pack_id
    assert len(dict(index.items())) == 5030


def test_superseding_index_file_makes_the_cache_stale(repo_path, tmp_path):
    """What gc does: a new file supersedes the old ones (which are then deleted)."""
    cache = str(tmp_path / "cache")
    repo = open_repo(repo_path, cache)
    index = repo.load_index()
    old_names = list(repo.index_names)
    kept = sorted(index.items())[:100]
    by_pack: dict[bytes, list[BlobEntry]] = {}
    for blob_id, loc in kept:
        by_pack.setdefault(loc.pack_id, []).append(
            BlobEntry(blob_id, loc.offset, loc.length, loc.raw_length)
        )
    repo.write_index(list(by_pack.items()), supersedes=old_names)
    # interrupted gc: the old files are still there, superseded
    stale = open_repo(repo_path, cache)
    assert len(stale.load_index()) == 100
    for name in old_names:
        stale.storage.delete(f"index/{name}")
    after = open_repo(repo_path, cache)
    index = after.load_index()
    assert dict(index.items()) == dict(kept) and index.base is not None
    assert index.base.covered == set(after.index_names)


def test_vanished_index_file_is_never_served_from_the_cache(repo_path, tmp_path):
    cache = str(tmp_path / "cache")
    repo = open_repo(repo_path, cache)
    index = repo.load_index()
    victim = repo.index_names[0]
    doomed = [i for i, loc in index.items()]
    repo.storage.delete(f"index/{victim}")
    expected = truth(repo_path)
    assert len(expected) < len(doomed)
    index = open_repo(repo_path, cache).load_index()
    assert dict(index.items()) == expected
    assert not any(blob_id in index for blob_id in set(doomed) - set(expected))


def test_gc_pending_bypasses_the_cache(repo_path, tmp_path):
    cache = str(tmp_path / "cache")
    open_repo(repo_path, cache).load_index()
    repo = open_repo(repo_path, cache)
    repo.storage.put(GC_PENDING, b"")
    # the fake packs do not exist: with the marker every entry is dropped, cache or not
    assert repo.load_index().base is None and len(repo.index) == 0


def test_real_gc_invalidates_cached_entries_of_deleted_packs(repo_path, tmp_path):
    cache = str(tmp_path / "cache")
    repo = open_repo(repo_path, cache)
    writer = BlobWriter(repo, workers=2)
    rng = random.Random(5)
    stored = [writer.add(rng.randbytes(3000)) for _ in range(50)]
    writer.flush()
    assert all(blob_id in open_repo(repo_path, cache).load_index() for blob_id in stored)
    # no snapshot references them: gc deletes their packs (and drops the fake entries)
    collect.run(open_repo(repo_path, cache), max_unused=0.0, allow_empty=True)
    index = open_repo(repo_path, cache).load_index()
    assert not any(blob_id in index for blob_id in stored)
    assert dict(index.items()) == truth(repo_path)


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 1]))


@pytest.mark.parametrize("where", ["header", "names", "truncated", "empty", "foreign"])
def test_damaged_cache_file_is_ignored_at_open(repo_path, tmp_path, where):
    cache = str(tmp_path / "cache")
    repo = open_repo(repo_path, cache)
    repo.load_index()
    path = cache_file(repo)
    if where == "header":
        flip_byte(path, 40)  # the entry count
    elif where == "names":
        flip_byte(path, indexcache.HEADER_BYTES + 3)
    elif where == "truncated":
        os.truncate(path, os.path.getsize(path) - 1)
    elif where == "empty":
        os.truncate(path, 0)
    else:  # a cache of another repository (another key) put in its place
        other = Repository.init(LocalStorage(str(tmp_path / "other")), PASSWORD.encode(),
                                64 * 1024, "zstd:3")  # fmt: skip
        write_fake_index(other, 500, files=1, per_pack=100, seed=9)
        other.cache_dir = cache
        other.load_index()
        os.replace(cache_file(other), path)
    reopened = open_repo(repo_path, cache)
    key = indexcache.cache_key(repo.key.enc_key, repo.key.id_key, repo.key.repo_id)
    assert indexcache.IndexCache(os.path.dirname(path), key, repo.key.repo_id).open() is None
    index = reopened.load_index()  # rebuilt
    assert dict(index.items()) == truth(repo_path)
    assert (
        index.base is not None
        and indexcache.IndexCache(os.path.dirname(path), key, repo.key.repo_id).open() is not None
    )


def test_forged_entry_in_a_block_falls_back_to_the_index_files(repo_path, tmp_path):
    """A block whose bytes changed (bit rot, or someone without the key adding an id) fails its
    tag the first time it is read: the index falls back to the repository's own files."""
    cache = str(tmp_path / "cache")
    repo = open_repo(repo_path, cache)
    repo.load_index()
    path = cache_file(repo)
    forged = os.urandom(32)
    reopened = open_repo(repo_path, cache)
    index = reopened.load_index()
    table = index.base
    # overwrite the id of entry 1000 with a forged one whose key sorts at the same place
    ids_at = table._at[1]
    original = bytes(table._raw[1][32 * 1000 : 32 * 1001])
    forged = original[:8] + forged[8:]
    with open(path, "r+b") as f:
        f.seek(ids_at + 32 * 1000)
        f.write(forged)
    assert forged not in index  # a presence claim is verified: the block fails, index falls back
    assert index.base is None and not os.path.exists(path)
    assert original in index and dict(index.items()) == truth(repo_path)
    assert open_repo(repo_path, cache).load_index().base is not None  # rebuilt next time


def test_fallback_keeps_entries_added_by_this_process(repo_path, tmp_path):
    cache = str(tmp_path / "cache")
    open_repo(repo_path, cache).load_index()
    repo = open_repo(repo_path, cache)
    index = repo.index
    pack_id, entries = fake_pack(random.Random(6), 10)
    index.add_pack(pack_id, entries)  # not in any index file
    table = index.base
    with open(cache_file(repo), "r+b") as f:
        f.seek(table._at[2] + 16 * 7)
        f.write(b"\xff\xff")
    index.items().__next__()  # verifies every block before the first item: falls back
    assert index.base is None
    assert index.lookup(entries[3].blob_id).pack_id == pack_id
    assert len(index) == 5010


def test_concurrent_rewriters_and_a_reader_of_the_old_file(repo_path, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    before = truth(repo_path)
    reader = open_repo(repo_path, cache)
    held = reader.load_index()  # maps the first file
    first_ino = os.stat(cache_file(reader)).st_ino
    reader.write_index([fake_pack(random.Random(8), 20)])
    expected = truth(repo_path)
    monkeypatch.setattr(indexcache, "REWRITE_ROWS", 1)  # every loader rewrites, all at once
    results: list[dict] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(dict(open_repo(repo_path, cache).load_index().items()))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(r == expected for r in results)
    assert os.stat(cache_file(reader)).st_ino != first_ino
    assert dict(held.items()) == before  # the old mapping still reads its own file
    folder = os.path.dirname(cache_file(reader))
    assert os.listdir(folder) == [indexcache.CACHE_NAME]  # no temporary file left behind


def test_temporary_file_of_a_killed_writer_is_removed(repo_path, tmp_path):
    cache = str(tmp_path / "cache")
    folder = os.path.dirname(cache_file(open_repo(repo_path, cache)))
    os.makedirs(folder)
    old, fresh = os.path.join(folder, ".index.dead.tmp"), os.path.join(folder, ".index.live.tmp")
    for path in (old, fresh):
        with open(path, "wb") as f:
            f.write(b"x" * 1000)
    os.utime(old, (0, 0))
    open_repo(repo_path, cache).load_index()
    assert sorted(os.listdir(folder)) == [".index.live.tmp", indexcache.CACHE_NAME]


def test_rewrite_merges_sorted_delta_across_chunks(tmp_path, monkeypatch):
    """The rewrite's chunked merge, with chunks much smaller than the table."""
    monkeypatch.setattr(indexcache, "_CHUNK_ROWS", indexcache.BLOCK * 2)
    key, repo_id = os.urandom(32), os.urandom(16)
    cache = indexcache.IndexCache(str(tmp_path / "c"), key, repo_id)
    rng = np.random.default_rng(7)

    def columns(n: int, pack: int) -> PackColumns:
        fields = rng.integers(41, 1 << 20, (n, 3)).astype("<u4")
        return PackColumns(bytes([pack]) * 32, rng.bytes(32 * n), fields)

    table, covered = cache.build(
        [("a" * 64, IndexFile([columns(1000, 1), columns(37, 2)], []))], 1037
    )
    assert covered == ["a" * 64] and len(table) == 1037
    index = ChunkIndex(table, lambda: pytest.fail("no fall-back expected"))
    extra = columns(333, 3)
    index.add_bulk(extra.pack_id, extra.ids, extra.fields)
    before = dict(index.items())
    new = cache.rewrite(table, index.own_entries(), index.pack_ids(), ["a" * 64, "b" * 64], [])
    after = ChunkIndex(new, lambda: pytest.fail("no fall-back expected"))
    assert len(new) == 1370 and dict(after.items()) == before
    assert new.covered == {"a" * 64, "b" * 64}


def write_raw_index(repo: Repository, packs, gen: int, floor: int, supersedes=()) -> str:
    """An index file with the given generation, written as gc (floor) or an old copy would."""
    data = encode_index(packs, list(supersedes), repo.sealer, gen=gen, floor=floor)
    name = content_hash(data).hex()
    repo.storage.put(f"index/{name}", data)
    return name


def test_a_raised_floor_makes_the_cache_stale_and_older_files_count_for_nothing(
    repo_path, tmp_path
):
    cache = str(tmp_path / "cache")
    repo = open_repo(repo_path, cache)
    repo.load_index()
    assert repo.index_floor == 0 and cache_table_floor(repo) == 0  # old-format files: gen 0
    old_names = list(repo.index_names)
    rng = random.Random(7)
    fresh = [fake_pack(rng, 20)]
    # A file raising the floor (gc's last file) without naming the old files: they fall below.
    floor_file = write_raw_index(repo, fresh, gen=1, floor=1)
    after = open_repo(repo_path, cache)
    index = after.load_index()
    assert after.index_floor == 1 and after.index_names == [floor_file]
    assert dict(index.items()) == truth(repo_path) and len(index) == 20
    assert index.base is not None and cache_table_floor(after) == 1  # rebuilt at the floor
    # An old file put back while the cache is at floor 1: a new file below it, ignored.
    saved = open_repo(repo_path, None).storage.get(f"index/{old_names[0]}")
    for name in old_names:
        after.storage.delete(f"index/{name}")
    put_back = fake_pack(rng, 5)
    name = write_raw_index(after, [put_back], gen=0, floor=0)
    after.storage.put(f"index/{old_names[0]}", saved)
    again = open_repo(repo_path, cache)
    index = again.load_index()
    assert index.base is not None and len(index) == 20 and again.index_names == [floor_file]
    assert not any(e.blob_id in index for e in put_back[1])
    assert dict(index.items()) == truth(repo_path)
    assert name not in again.index_names


def cache_table_floor(repo: Repository) -> int:
    key = indexcache.cache_key(repo.key.enc_key, repo.key.id_key, repo.key.repo_id)
    folder = os.path.dirname(cache_file(repo))
    table = indexcache.IndexCache(folder, key, repo.key.repo_id).open()
    assert table is not None
    return table.floor


def test_a_version_1_cache_is_rebuilt(repo_path, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    monkeypatch.setattr(cacheformat, "VERSION", 1)
    open_repo(repo_path, cache).load_index()
    monkeypatch.setattr(cacheformat, "VERSION", 2)
    repo = open_repo(repo_path, cache)
    key = indexcache.cache_key(repo.key.enc_key, repo.key.id_key, repo.key.repo_id)
    folder = os.path.dirname(cache_file(repo))
    assert indexcache.IndexCache(folder, key, repo.key.repo_id).open() is None
    index = repo.load_index()
    assert index.base is not None and dict(index.items()) == truth(repo_path)
