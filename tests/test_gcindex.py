"""The entry table (`dedupe.repo.entrytable`), gc's marks on it (`dedupe.gc.mark`) and gc's
bounded index files (`dedupe.gc.indexfiles`): lookups, marks, and the order in which replacements
are written (only the last file supersedes; a failed write leaves the old
files current and takes its own files back)."""

from __future__ import annotations

import numpy as np
import pytest

from dedupe.errors import OutOfSpace
from dedupe.gc import indexfiles
from dedupe.gc.indexfiles import IndexFiles
from dedupe.gc.mark import TableMarks
from dedupe.gc.plan import make_plan
from dedupe.gc.survey import packs_of
from dedupe.repo.entrytable import EntryTable
from dedupe.repo.index import decode_index, judge
from dedupe.repo.repository import Repository
from dedupe.storage.faults import FailNthCall
from dedupe.storage.memory import MemoryStorage

PASSWORD = b"gcindex tests"


pytestmark = pytest.mark.usefixtures("cheap_kdf")


def blob(n: int, prefix: int | None = None) -> bytes:
    """A blob id; ids with the same `prefix` share their first 8 bytes (the sort key)."""
    head = (n if prefix is None else prefix).to_bytes(8, "little")
    return head + n.to_bytes(24, "little")


def add(table: EntryTable, pack: int, blobs: list[bytes], indexed: bool = True) -> int:
    fields = np.array([(100 * i, 60, 20) for i in range(len(blobs))], dtype=np.uint32)
    return table.add_pack(
        bytes([pack]) * 32, 100 * len(blobs) + 50, indexed, b"".join(blobs), fields
    )


def test_lookups_compare_full_ids_and_find_the_first_copy():
    table = EntryTable()
    shared = [blob(i, prefix=7) for i in range(1, 5)]  # one sort key, four blobs
    add(table, 1, [blob(100), shared[2], shared[0]])
    add(table, 2, [shared[1], shared[0], blob(101)], indexed=False)
    add(table, 1, [blob(100)])  # pack 1 named again by a second index file
    table.seal()
    assert table.find(shared[0]) == (0, 200, 60, 20)  # the copy appended first
    assert table.find(shared[1]) == (1, 0, 60, 20)
    assert table.find(shared[3]) is None and table.find(blob(102)) is None
    query = np.frombuffer(b"".join([shared[3], shared[2], blob(101), shared[0]]), np.uint8)
    assert table.locate(query.reshape(-1, 32)).tolist() == [-1, 1, 5, 2]
    marks = TableMarks(table)
    assert marks.visit_tree(shared[1]) and not marks.visit_tree(shared[1])
    marks.add_data([shared[0], blob(100), blob(999), blob(999)])
    assert marks.finish() == 1  # blob 999, counted once
    live = marks.entries().live
    # every copy of a reached blob is live: shared[0] in both packs, blob 100 both times
    assert live.tolist() == [True, False, True, True, True, False, True]


def test_an_empty_table_answers_nothing():
    table = EntryTable()
    table.seal()
    marks = TableMarks(table)
    assert table.find(blob(1)) is None and marks.visit_tree(blob(1))
    assert table.locate(np.zeros((2, 32), np.uint8)).tolist() == [-1, -1]
    marks.add_data([blob(2)])
    assert marks.finish() == 1 and len(marks.entries().live) == 0


def test_many_rows_round_trip_through_batches():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 256, (50_000, 32), dtype=np.uint8)
    ids[::7, :8] = 0  # many equal keys
    table = EntryTable(expected_rows=10)  # grows
    for start in range(0, len(ids), 300):
        chunk = ids[start : start + 300]
        fields = np.tile(np.array([[0, 60, 20]], dtype=np.uint32), (len(chunk), 1))
        table.add_pack(start.to_bytes(32, "little"), 1 << 20, True, chunk.tobytes(), fields)
    table.seal()
    rows = table.locate(ids[::-1])
    assert rows.tolist() == list(range(len(ids)))[::-1]
    reached = ids[::3]
    marks = TableMarks(table)
    for start in range(0, len(reached), 1000):
        marks.add_data([r.tobytes() for r in reached[start : start + 1000]])
    assert marks.finish() == 0
    assert np.flatnonzero(marks.entries().live).tolist() == list(range(0, len(ids), 3))


def index_files(repo: Repository) -> dict[str, tuple[list[bytes], list[str], int]]:
    """name -> (pack ids, supersedes, entries) of every index file."""
    out = {}
    for info in repo.storage.list("index/"):
        name = info.name.split("/")[-1]
        f = decode_index(repo.storage.get(info.name), repo.sealer, name)
        out[name] = (
            [c.pack_id for c in f.columns],
            f.supersedes,
            sum(len(c.ids) // 32 for c in f.columns),
        )
    return out


def setup_files(storage) -> tuple[Repository, IndexFiles, list[str]]:
    """Six packs of 3 entries each, named by three (pretend) current files."""
    repo = Repository.init(storage, PASSWORD, 64 * 1024, "zstd:3")
    table = EntryTable()
    for pack in range(6):
        add(table, pack, [blob(10 * pack + i) for i in range(3)])
    table.seal()
    marks = TableMarks(table)
    marks.finish()
    plan = make_plan(marks.entries(), packs_of(table), 0.1)
    old = ["a" * 64, "b" * 64, "c" * 64]
    files = IndexFiles(repo, table, plan, {old[0]: [0, 1], old[1]: [2, 3], old[2]: [4, 5]})
    return repo, files, old


def test_replace_rewrites_only_the_files_naming_what_changes(monkeypatch):
    monkeypatch.setattr(indexfiles, "MAX_FILE_ENTRIES", 4)
    repo, files, old = setup_files(MemoryStorage())
    files.replace([2], [])
    written = index_files(repo)
    assert len(written) == 1
    ((name, (packs, supersedes, entries)),) = written.items()
    assert packs == [bytes([3]) * 32] and supersedes == [old[1]] and entries == 3
    assert sorted(files.files) == sorted([old[0], old[2], name])
    assert files.entries_of([old[0], name]) == (3, 9)


def test_commit_writes_bounded_files_and_only_the_last_supersedes(monkeypatch):
    monkeypatch.setattr(indexfiles, "MAX_FILE_ENTRIES", 7)
    repo, files, old = setup_files(MemoryStorage())
    files.commit([0, 1, 2, 3, 4, 5], old)
    written = index_files(repo)
    assert sorted(e for _p, _s, e in written.values()) == [6, 6, 6]  # two packs a file
    superseding = [n for n, (_p, s, _e) in written.items() if s]
    assert len(superseding) == 1 and written[superseding[0]][1] == sorted(old)
    named = sorted(p for packs, _s, _e in written.values() for p in packs)
    assert named == [bytes([i]) * 32 for i in range(6)]
    assert sorted(files.files) == sorted(written)


def test_a_commit_that_runs_out_of_space_takes_its_files_back(monkeypatch):
    monkeypatch.setattr(indexfiles, "MAX_FILE_ENTRIES", 3)
    storage = MemoryStorage()
    repo, files, old = setup_files(storage)
    repo.storage = FailNthCall(storage, "put", n=3, error=OutOfSpace("full (injected)"))
    with pytest.raises(OutOfSpace):
        files.commit([0, 1, 2, 3, 4], old)
    assert index_files(repo) == {}  # the two files written were deleted again
    assert sorted(files.files) == sorted(old)  # the old files are still the current ones
    repo.storage = storage
    files.commit([], old)  # everything dropped: one empty file supersedes the old ones
    ((_name, (packs, supersedes, entries)),) = index_files(repo).items()
    assert packs == [] and supersedes == sorted(old) and entries == 0


def test_no_replaced_file_counts_again_even_put_back(monkeypatch):
    """A full replacement raises the floor; a repack (a replacement of some files) supersedes
    what the files it replaces superseded, too. So after any sequence of them, putting back
    every index file ever written leaves exactly the current files counting."""
    monkeypatch.setattr(indexfiles, "MAX_FILE_ENTRIES", 7)
    storage = MemoryStorage()
    repo, files, old = setup_files(storage)
    ever: dict[str, bytes] = {}

    def keep_copies() -> None:
        for info in storage.list("index/"):
            ever[info.name] = storage.get(info.name)

    files.commit([0, 1, 2, 3, 4, 5], old)  # gc's step 2: every current file replaced
    keep_copies()
    gens = {n: decode_index(d, repo.sealer, n).generation for n, d in ever.items()}
    assert sorted((g.gen, g.floor) for g in gens.values()) == [(1, 0), (1, 0), (1, 1)]
    files.replace([0], [])  # a repack rewrites the file naming packs 0 and 1
    keep_copies()
    files.replace([1], [])  # a later repack rewrites that file in turn
    keep_copies()
    files.replace([2, 4], [])
    keep_copies()
    gone = {n: d for n, d in ever.items() if not storage.exists(n)}
    assert len(gone) >= 4
    for name, data in gone.items():  # each old file put back on its own, then all of them
        for back in ({name: data}, gone):
            for n, d in back.items():
                storage.put(n, d)
            listed = {i.name.split("/")[-1]: storage.get(i.name) for i in storage.list("index/")}
            generations = {n: decode_index(d, repo.sealer, n).generation for n, d in listed.items()}
            verdict = judge(generations)
            assert sorted(verdict.current) == sorted(files.files), name
            assert verdict.floor == 1
            for n in back:
                storage.delete(n)
