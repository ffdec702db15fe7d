"""gc through the library on real local repositories: marking, freeing, repacking, leftovers,
full-disk ordering (the `gc-pending` marker) and the space pre-flight estimate."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from dedupe.backup import space
from dedupe.backup.archiver import Archiver
from dedupe.errors import DedupeError, FormatError, OutOfSpace
from dedupe.gc import collect, survey
from dedupe.gc.mark import SetMarks, TableMarks, mark_reachable, mark_snapshots
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, FILE, Node, encode_tree
from dedupe.repo import config as config_mod
from dedupe.repo import manifests, reserve
from dedupe.repo.pack import PackBuilder
from dedupe.repo.repository import GC_PENDING, Repository, pack_name
from dedupe.repo.treewalk import MAX_DEPTH, walk
from dedupe.repo.writer import BlobWriter
from dedupe.storage.faults import FailNthCall, OutOfSpaceAfter
from dedupe.storage.local import LocalStorage

PASSWORD = b"gc tests"
SMALL_PACKS = 1 << 20  # the smallest a config allows
T0 = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("cheap_kdf")


def new_repo(root: str, pack_size: int = SMALL_PACKS, chunk_avg: int = 16384) -> Repository:
    """A repository with small packs, so a few MiB make many packs (tests only)."""
    os.makedirs(root, exist_ok=True)
    storage = LocalStorage(root)
    repo = Repository.init(storage, PASSWORD, chunk_avg, "zstd:3")
    settings = dataclasses.replace(repo.settings, pack_size=pack_size)
    storage.put("config", config_mod.encode_config(settings, repo.sealer))
    return reopen(storage)


def reopen(storage) -> Repository:
    return Repository.open(storage, lambda: PASSWORD)


def take_snapshot(repo: Repository, path: str, when: datetime = T0) -> Snapshot:
    writer = BlobWriter(repo)
    archiver = Archiver(writer, repo.chunker())
    try:
        tree = archiver.archive_paths([os.fsencode(path)])
        writer.flush()
    except BaseException:
        writer.abort()
        raise
    snap = Snapshot(
        id=manifests.new_snapshot_id(),
        time=when,
        host="test",
        user="test",
        paths=(os.fsencode(path),),
        tags=(),
        tree=tree,
        summary={"raw_bytes_new": writer.stats.raw_bytes_new},
    )
    manifests.save(repo, snap)
    return snap


def contents(repo: Repository, snap: Snapshot) -> dict[bytes, bytes]:
    """path -> file bytes, read back through a freshly loaded index."""
    repo = reopen(repo.storage)
    out = {}
    for path, node in walk(repo, snap.tree):
        if node.type == "f":
            out[path] = b"".join(repo.read_blob(b) for b in node.content)
    return out


def write_files(folder: str, count: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        with open(os.path.join(folder, f"f{i:04d}"), "wb") as f:
            f.write(rng.randbytes(size))


def stored(repo: Repository) -> int:
    return survey.stored_bytes(repo.storage)


def age_back(*paths: str) -> None:
    """Make files older than gc's grace period by the storage's clock (the file system's)."""
    old = time.time() - survey.GRACE_SECONDS - 3600
    for path in paths:
        os.utime(path, (old, old))


def data_files(root: str) -> set[str]:
    return {n for _d, _s, files in os.walk(os.path.join(root, "data")) for n in files}


# --- gc on real repositories -------------------------------------------------------------------


def test_gc_frees_forgotten_snapshot_and_the_rest_restores(tmp_path):
    repo = new_repo(str(tmp_path / "repo"))
    write_files(str(tmp_path / "old"), 8, 200_000, seed=1)
    write_files(str(tmp_path / "new"), 8, 200_000, seed=2)
    old = take_snapshot(repo, str(tmp_path / "old"))
    new = take_snapshot(repo, str(tmp_path / "new"), T0 + timedelta(days=1))
    expected = contents(repo, new)
    manifests.delete(repo, old)
    before = stored(repo)
    with repo.lock(exclusive=True):
        result = collect.run_gc(repo)
    assert result.freed_bytes > 1_500_000 and result.packs_deleted > 0
    assert result.stored_bytes_before == before and result.stored_bytes_after == stored(repo)
    assert contents(repo, new) == expected
    again = collect.run(reopen(repo.storage))
    assert again.freed_bytes == 0 and again.packs_deleted == again.packs_rewritten == 0


def test_the_table_marks_exactly_what_the_trees_reference(tmp_path):
    repo = new_repo(str(tmp_path / "repo"))
    write_files(str(tmp_path / "a"), 6, 120_000, seed=21)
    write_files(str(tmp_path / "b"), 6, 120_000, seed=22)
    gone = take_snapshot(repo, str(tmp_path / "a"))
    kept = take_snapshot(repo, str(tmp_path / "b"), T0 + timedelta(days=1))
    manifests.delete(repo, gone)
    expected = SetMarks()
    mark_reachable(reopen(repo.storage), [kept.tree], expected)
    found = survey.survey_repository(repo)
    marks = TableMarks(found.table)
    assert mark_snapshots(repo, marks, lambda *_: None) == 0
    table = found.table
    live = {table.ids[row].tobytes() for row in np.flatnonzero(marks.entries().live)}
    assert live == expected.trees | expected.data
    assert len(live) < table.rows  # the forgotten snapshot's blobs are not marked


def test_dry_run_changes_nothing(tmp_path):
    repo = new_repo(str(tmp_path / "repo"))
    write_files(str(tmp_path / "a"), 4, 100_000, seed=3)
    snap = take_snapshot(repo, str(tmp_path / "a"))
    manifests.delete(repo, snap)
    listing = sorted((i.name, i.size) for i in repo.storage.list(""))
    result = collect.run_gc(repo, max_unused=0.0, dry_run=True, allow_empty=True)
    assert result.dry_run and result.freed_bytes > 300_000 and result.packs_deleted > 0
    assert sorted((i.name, i.size) for i in repo.storage.list("")) == listing


def test_repack_of_half_forgotten_small_files_returns_80_percent(tmp_path):
    """400 small files; half of them removed and the old snapshot forgotten."""
    repo = new_repo(str(tmp_path / "repo"), pack_size=16 << 20)
    src = str(tmp_path / "src")
    write_files(src, 400, 12_000, seed=4)
    first = take_snapshot(repo, src)
    gone = sum(os.path.getsize(os.path.join(src, f"f{i:04d}")) for i in range(0, 400, 2))
    for i in range(0, 400, 2):
        os.unlink(os.path.join(src, f"f{i:04d}"))
    second = take_snapshot(repo, src, T0 + timedelta(days=1))
    expected = contents(repo, second)
    manifests.delete(repo, first)
    default = collect.run_gc(repo, dry_run=True)
    assert default.packs_rewritten >= 1  # half unused: above 10 %
    result = collect.run(repo, max_unused=0.0)
    assert result.packs_rewritten >= 1 and result.packs_written >= 1
    assert result.freed_bytes >= 0.8 * gone
    assert contents(repo, second) == expected


def test_default_threshold_leaves_a_mostly_used_pack(tmp_path):
    repo = new_repo(str(tmp_path / "repo"), pack_size=16 << 20)
    src = str(tmp_path / "src")
    write_files(src, 20, 20_000, seed=5)
    with open(os.path.join(src, "tiny"), "wb") as f:
        f.write(random.Random(6).randbytes(3000))
    first = take_snapshot(repo, src)
    os.unlink(os.path.join(src, "tiny"))  # < 10 % of whichever of the two packs held it
    take_snapshot(repo, src, T0 + timedelta(days=1))
    manifests.delete(repo, first)
    result = collect.run(repo)
    assert result.packs_rewritten == 0 and result.unused_bytes > 2_000


def test_leftovers_of_interrupted_writes_are_deleted(tmp_path):
    root = str(tmp_path / "repo")
    repo = new_repo(root)
    write_files(str(tmp_path / "a"), 2, 50_000, seed=6)
    take_snapshot(repo, str(tmp_path / "a"))
    builder = PackBuilder()
    builder.add(b"\x01" * 32, repo.blobs.encode(b"orphan data"), 11)
    orphan_id, data = builder.finish(repo.sealer)
    repo.storage.put(pack_name(orphan_id), data)  # a pack no index names
    tmp = os.path.join(root, "data", ".tmp-0123456789abcdef")
    with open(tmp, "wb") as f:
        f.write(b"x" * 5000)
    young = collect.run(repo)  # a backup may still be writing them: kept for GRACE_SECONDS
    assert young.packs_deleted == young.temporary_files_deleted == 0
    assert young.packs_kept_young == 1 and os.path.exists(tmp)
    assert repo.storage.exists(pack_name(orphan_id))
    age_back(tmp, os.path.join(root, *pack_name(orphan_id).split("/")))
    result = collect.run(repo)
    assert result.packs_deleted == 1 and result.temporary_files_deleted == 1
    assert not os.path.exists(tmp) and not repo.storage.exists(pack_name(orphan_id))


def test_pack_whose_index_file_was_lost_is_adopted(tmp_path):
    repo = new_repo(str(tmp_path / "repo"))
    write_files(str(tmp_path / "a"), 3, 100_000, seed=7)
    snap = take_snapshot(repo, str(tmp_path / "a"))
    expected = contents(repo, snap)
    for info in list(repo.storage.list("index/")):
        repo.storage.delete(info.name)
    packs = [
        os.path.join(repo.storage.root, *i.name.split("/")) for i in repo.storage.list("data/")
    ]
    young = collect.run(reopen(repo.storage))  # left alone for now: perhaps a backup's, unfinished
    assert young.packs_kept_young == len(packs) and young.packs_deleted == 0
    assert list(repo.storage.list("index/")) == []
    age_back(*packs)
    result = collect.run(reopen(repo.storage))
    assert result.packs_deleted == 0 and result.missing_blobs == 0 and result.packs_kept_young == 0
    assert contents(repo, snap) == expected


def test_full_disk_order_deletes_first_and_marker_hides_deleted_packs(tmp_path):
    """On a disk too full for the index write, garbage packs go first under `gc-pending`.
    Interrupted right there, readers ignore entries of the deleted packs: a new snapshot of the
    forgotten data stores it again instead of deduplicating against chunks that are gone."""
    root = str(tmp_path / "repo")
    repo = new_repo(root)
    write_files(str(tmp_path / "a"), 6, 100_000, seed=8)
    write_files(str(tmp_path / "b"), 2, 100_000, seed=9)
    old = take_snapshot(repo, str(tmp_path / "a"))
    keep = take_snapshot(repo, str(tmp_path / "b"))
    manifests.delete(repo, old)
    full = OutOfSpaceAfter(repo.storage, 0)  # free_space() is 0; only empty objects fit
    repo_full = Repository(full, repo.key, repo.settings, repo.key_name)
    with pytest.raises(OutOfSpace):
        collect.run_gc(repo_full)  # the marker fits, the index write after the deletes does not
    assert repo.storage.exists(GC_PENDING)
    assert len(data_files(root)) < 6  # garbage already deleted
    fresh = reopen(repo.storage)
    assert contents(fresh, keep) == contents(repo, keep)
    again = take_snapshot(fresh, str(tmp_path / "a"), T0 + timedelta(days=2))
    assert contents(fresh, again) == {
        os.fsencode(str(tmp_path / "a" / n)): (tmp_path / "a" / n).read_bytes()
        for n in os.listdir(tmp_path / "a")
    }
    result = collect.run(reopen(repo.storage))  # finishes the job and removes the marker
    assert not repo.storage.exists(GC_PENDING) and result.missing_blobs == 0


def half_forgotten(tmp_path, seed: int, files: int = 60) -> tuple[Repository, Snapshot]:
    """1 MiB packs, each about half unused (two of them with the default 60 files), and the
    snapshot that is kept."""
    repo = new_repo(str(tmp_path / "repo"))
    src = str(tmp_path / "src")
    write_files(src, files, 20_000, seed=seed)
    first = take_snapshot(repo, src)
    for i in range(0, files, 2):
        os.unlink(os.path.join(src, f"f{i:04d}"))
    second = take_snapshot(repo, src, T0 + timedelta(days=1))
    manifests.delete(repo, first)
    return repo, second


def test_repacks_run_in_batches_that_fit_the_free_space(tmp_path):
    repo, kept = half_forgotten(tmp_path, seed=10)
    expected = contents(repo, kept)
    # Room for one repack beyond the margin at a time: each batch frees space for the next.
    limited = OutOfSpaceAfter(repo.storage, (1 << 20) + 450_000)
    result = collect.run(Repository(limited, repo.key, repo.settings, "k"), max_unused=0.0)
    assert result.packs_rewritten == 2 and result.packs_left_for_space == 0
    assert result.packs_written == 2  # one per batch
    assert contents(repo, kept) == expected


def test_repacks_stop_when_free_space_runs_out_and_report_it(tmp_path):
    repo, kept = half_forgotten(tmp_path, seed=11)
    expected = contents(repo, kept)
    listing = sorted((i.name, i.size) for i in repo.storage.list("data/"))
    limited = OutOfSpaceAfter(repo.storage, 1 << 20)  # not even one repack fits
    result = collect.run(Repository(limited, repo.key, repo.settings, "k"), max_unused=0.0)
    assert result.packs_rewritten == 0 and result.packs_left_for_space == 2
    assert result.unused_bytes > 500_000
    assert sorted((i.name, i.size) for i in repo.storage.list("data/")) == listing
    finish = collect.run(reopen(repo.storage), max_unused=0.0)
    assert finish.packs_left_for_space == 0 and finish.unused_bytes == 0
    assert contents(repo, kept) == expected


def test_gc_refuses_to_delete_when_a_tree_is_unreadable(tmp_path):
    repo = new_repo(str(tmp_path / "repo"))
    write_files(str(tmp_path / "a"), 2, 50_000, seed=11)
    take_snapshot(repo, str(tmp_path / "a"))
    for info in list(repo.storage.list("data/")):
        repo.storage.delete(info.name)
    listing = sorted(i.name for i in repo.storage.list(""))
    with pytest.raises(DedupeError):
        collect.run(reopen(repo.storage))
    assert sorted(i.name for i in repo.storage.list("") if not i.name.startswith("locks/")) == [
        n for n in listing if not n.startswith("locks/")
    ]


class FullWhileReserveExists:
    """A disk that is full until the space reserve is deleted."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.url = inner.url

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def put(self, name, data, exclusive=False):
        if self.inner.exists(reserve.RESERVE_NAME):
            raise OutOfSpace(f"out of disk space while writing {name} (injected)")
        return self.inner.put(name, data, exclusive)


def test_exclusive_lock_spends_the_reserve_on_a_full_disk(tmp_path):
    repo = new_repo(str(tmp_path / "repo"))
    assert repo.storage.exists(reserve.RESERVE_NAME)
    repo_full = Repository(FullWhileReserveExists(repo.storage), repo.key, repo.settings, "k")
    with pytest.raises(OutOfSpace):
        repo_full.lock(exclusive=False)  # a snapshot never spends it
    with pytest.raises(OutOfSpace):
        repo_full.lock(exclusive=True)  # nor does hold/release: they free nothing
    assert repo.storage.exists(reserve.RESERVE_NAME)
    with repo_full.lock(exclusive=True, frees_space=True):
        assert not repo.storage.exists(reserve.RESERVE_NAME)
    collect.run(reopen(repo.storage))
    assert repo.storage.exists(reserve.RESERVE_NAME)  # written back once there is room


def test_writer_deletes_its_packs_when_the_index_write_fails(tmp_path):
    root = str(tmp_path / "repo")
    repo = new_repo(root)
    write_files(str(tmp_path / "a"), 4, 100_000, seed=12)
    failing = FailNthCall(repo.storage, "put", n=1, error=OutOfSpace("disk full (injected)"))

    class IndexPutFails:
        url = repo.storage.url

        def __getattr__(self, attr):
            return getattr(repo.storage, attr)

        def put(self, name, data, exclusive=False):
            target = failing if name.startswith("index/") else repo.storage
            return target.put(name, data, exclusive)

    broken = Repository(IndexPutFails(), repo.key, repo.settings, repo.key_name)
    with pytest.raises(OutOfSpace):
        take_snapshot(broken, str(tmp_path / "a"))
    assert data_files(root) == set()


def test_preflight_warns_when_free_space_is_below_the_estimate(tmp_path):
    repo = new_repo(str(tmp_path / "repo"))
    src = str(tmp_path / "src")
    write_files(src, 5, 1_000_000, seed=13)
    paths = [os.fsencode(src)]
    assert space.estimate_snapshot_bytes(repo, paths) >= 5_000_000  # first run: source size
    assert space.preflight_warning(repo, paths) is None  # the test disk has room
    small = Repository(OutOfSpaceAfter(repo.storage, 2_000_000), repo.key, repo.settings, "k")
    warnings: list[str] = []
    space.warn_if_low_space(small, paths, False, warnings.append)
    assert len(warnings) == 1 and "forget" in warnings[0] and "gc" in warnings[0]
    take_snapshot(repo, src)
    history = space.estimate_snapshot_bytes(repo, paths)
    assert 5_000_000 <= history <= 5_000_000 * 1.25 + (8 << 20)  # from the last run's growth
    assert space.estimate_snapshot_bytes(repo, [b"/stdin-name"], stdin_mode=True) is None


def test_a_damaged_pack_among_parallel_repacks_is_kept_and_the_rest_repacked(tmp_path):
    repo, kept = half_forgotten(tmp_path, seed=12, files=300)
    expected = contents(repo, kept)
    before = data_files(str(tmp_path / "repo"))
    planned = collect.run(reopen(repo.storage), max_unused=0.0, dry_run=True).packs_rewritten
    assert planned >= 4
    # The largest pack holds file data, half of it forgotten: it is one of the repacks.
    sizes = {n: os.path.getsize(p) for p in _pack_paths(tmp_path) for n in [os.path.basename(p)]}
    victim = max(sorted(before), key=sizes.__getitem__)
    path = next(p for p in _pack_paths(tmp_path) if p.endswith(victim))
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))
    damaged = open(path, "rb").read()
    result = collect.run(reopen(repo.storage), max_unused=0.0)
    assert result.damaged_packs == [victim]
    assert result.packs_rewritten == planned - 1  # every other repack was done
    assert victim in data_files(str(tmp_path / "repo"))
    assert open(path, "rb").read() == damaged  # the damaged copy is left for repair
    # Files none of whose chunks were in the damaged pack read back as they were.
    fresh = reopen(repo.storage)
    victim_id = bytes.fromhex(victim)
    intact = [
        (rel, node)
        for rel, node in walk(fresh, kept.tree)
        if node.type == "f" and all(fresh.locate(b).pack_id != victim_id for b in node.content)
    ]
    assert len(intact) >= 30  # (which files shared the pack depends on the random chunking)
    for rel, node in intact:
        assert b"".join(fresh.read_blob(b) for b in node.content) == expected[rel]


def _pack_paths(tmp_path) -> list[str]:
    root = str(tmp_path / "repo" / "data")
    return [os.path.join(d, n) for d, _s, files in os.walk(root) for n in files]


class _UnmeasuredDisk(OutOfSpaceAfter):
    """A disk whose free space cannot be asked (gc repacks everything in one batch) and that
    fills up part way through it."""

    def free_space(self) -> int | None:
        return None


def test_a_disk_that_fills_in_the_middle_of_a_parallel_batch_loses_nothing(tmp_path):
    repo, kept = half_forgotten(tmp_path, seed=13, files=300)
    expected = contents(repo, kept)
    limited = _UnmeasuredDisk(repo.storage, 1_500_000)  # about one new pack, then full
    result = collect.run(Repository(limited, repo.key, repo.settings, "k"), max_unused=0.0)
    assert result.packs_left_for_space >= 1
    assert contents(repo, kept) == expected
    finish = collect.run(reopen(repo.storage), max_unused=0.0)
    assert finish.packs_left_for_space == 0 and finish.unused_bytes == 0
    assert contents(repo, kept) == expected


class _TreesOnly:
    """What mark_reachable reads of a repository: encoded trees by id."""

    def __init__(self, trees: dict[bytes, list]) -> None:
        self.blobs = {tid: encode_tree(nodes) for tid, nodes in trees.items()}
        self.reads: list[bytes] = []

    def read_blob(self, tree_id: bytes) -> bytes:
        self.reads.append(tree_id)
        if tree_id not in self.blobs:
            raise DedupeError(f"tree {tree_id.hex()[:8]} is missing")
        return self.blobs[tree_id]


def _tid(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_marking_refuses_a_chain_of_trees_deeper_than_the_limit():
    trees = {
        _tid(i): [Node(b"d", DIR, 0o755, 0, subtree=_tid(i + 1))] for i in range(MAX_DEPTH + 5)
    }
    trees[_tid(MAX_DEPTH + 5)] = [Node(b"leaf", FILE, 0o644, 0, content=(_tid(10**6),))]
    with pytest.raises(FormatError, match="deep"):
        mark_reachable(_TreesOnly(trees), [_tid(0)], SetMarks())  # type: ignore[arg-type]


def test_marking_reads_each_shared_tree_once_and_reaches_every_blob():
    trees = {_tid(0): [Node(b"leaf", FILE, 0o644, 0, content=(_tid(500),))]}
    for level in range(1, 41):  # 2**40 paths through 41 trees
        trees[_tid(level)] = [
            Node(b"a", DIR, 0o755, 0, subtree=_tid(level - 1)),
            Node(b"b", DIR, 0o755, 0, subtree=_tid(level - 1)),
            Node(b"f", FILE, 0o644, 0, content=(_tid(1000 + level),)),
        ]
    repo, marks = _TreesOnly(trees), SetMarks()
    mark_reachable(repo, [_tid(40), _tid(20)], marks)  # type: ignore[arg-type]
    assert sorted(repo.reads) == sorted(trees)  # each once
    assert marks.trees == set(trees)
    assert marks.data == {_tid(500)} | {_tid(1000 + n) for n in range(1, 41)}
    with pytest.raises(DedupeError, match="missing"):
        mark_reachable(_TreesOnly({_tid(1): trees[_tid(1)]}), [_tid(1)], SetMarks())  # type: ignore[arg-type]
