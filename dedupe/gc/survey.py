"""gc's survey: what the repository holds when gc starts, and what gc must not touch yet.

`survey_repository` lists every object once: packs (with size and mtime), index files (read one
at a time into an `EntryTable`, `dedupe.repo.entrytable`, about 60 bytes an entry), the headers of
packs no current index file names (their entries join the table, so a lost index file never costs
a live chunk), and the temporary leftovers of interrupted writes. Nothing is written or deleted.

The grace period: a lock can be misjudged (stale by mistake), so besides the exclusive lock gc
keeps a time margin. Packs no index names and temporary files in data/, index/ and snapshots/
younger than GRACE_SECONDS, by the storage's clock (the mtime of gc's own lock), are kept: a
backup whose lock gc misjudged may still be writing them, and its index and manifest come last
(kopia's minimum content age is the same 24 hours). Ages by the storage's clock, because this
machine's clock may run ahead of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dedupe.errors import DamageError, DedupeError, ObjectNotFound, StorageError
from dedupe.gc.plan import Packs, with_young
from dedupe.repo import reserve
from dedupe.repo.entrytable import MIN_INDEX_BYTES_PER_ENTRY, EntryTable
from dedupe.repo.indexfile import Generation, Verdict, decode_index, judge
from dedupe.repo.pack import BlobEntry, decode_header, header_span
from dedupe.repo.repository import Repository, pack_id_from_name, pack_name
from dedupe.storage.base import Leftover, Storage

# Temporary files outside data/, index/ and snapshots/ may belong to a lock being taken right
# now (locks are written without holding a lock); only old ones there are leftovers.
TEMP_GRACE_SECONDS = 3600.0
# Packs no index names and temporaries in data/, index/, snapshots/ younger than this (by the
# storage's clock) are kept: see the module docstring.
GRACE_SECONDS = 24 * 3600.0
_GC_FOLDERS = ("data", "index", "snapshots")


@dataclass
class Survey:
    """The repository's packs and index files as listed at the start of gc."""

    table: EntryTable
    """Every entry of every present pack: named by a current index file, or from its header."""
    files: dict[str, list[int]]
    """Current index file -> the (present) packs it names, by number."""
    superseded: list[str]
    absent_indexed: int
    unreadable: list[bytes]
    stored_bytes: int
    temporary: list[Leftover]
    pack_bytes: int = 0
    pack_mtimes: dict[bytes, float | None] = field(default_factory=dict)
    """Each pack's mtime by the storage's clock (None: unknown)."""
    clock: float | None = None
    """The storage's "now" at the survey (see `survey_repository`); None where unknown."""
    generations: dict[str, Generation] = field(default_factory=dict)
    """Each current index file's generation, for the replacements gc writes."""
    floor: int = 0
    """The index floor in force (`dedupe.repo.indexfile.judge`)."""

    def packs(self) -> Packs:
        """Every pack, those no index names written within GRACE_SECONDS marked young."""
        return with_young(packs_of(self.table), self.pack_mtimes, self.clock, GRACE_SECONDS)


def packs_of(table: EntryTable) -> Packs:
    """The planner's view of the table's packs (none of them young)."""
    return Packs(pack_ids=table.pack_ids, sizes=table.pack_sizes(), indexed=table.pack_indexed())


def survey_repository(
    repo: Repository, lock_name: str | None = None, now: float | None = None
) -> Survey:
    """List packs and index files; read headers of packs no current index file names. The
    storage's time is `now` if given, else the mtime of the lock `lock_name`, else of the newest
    lock (the caller holds one), else of the newest object: all no later than the real time."""
    storage = repo.storage
    pack_sizes: dict[bytes, int] = {}
    pack_mtimes: dict[bytes, float | None] = {}
    stored = 0
    newest_lock = newest = None
    for info in storage.list(""):
        if info.name.startswith("locks/"):
            newest_lock = _later(newest_lock, info.mtime)
            continue
        newest = _later(newest, info.mtime)
        if info.name == reserve.RESERVE_NAME:
            continue
        stored += info.size
        pack_id = pack_id_from_name(info.name)
        if pack_id is not None:
            pack_sizes[pack_id] = info.size
            pack_mtimes[pack_id] = info.mtime
    clock = now or _own_lock_time(storage, lock_name) or newest_lock or newest
    try:
        found = read_index(repo, pack_sizes)
    except DamageError as exc:
        raise DamageError(
            f"an index file is damaged ({exc}); gc deleted nothing. Run 'dedupe repair index' "
            "to rebuild the index from the packs, then run gc again"
        ) from None
    except StorageError as exc:
        if isinstance(exc, ObjectNotFound):
            raise
        raise type(exc)(
            f"gc could not read the index ({exc}); it deleted nothing. If the disk or the "
            "connection is failing, fix that first; if an index file is unreadable, run "
            "'dedupe repair index' to rebuild the index from the packs"
        ) from None
    temporary = temporary_files(storage, clock)
    stored += sum(t.size for t in temporary)
    return Survey(
        table=found.table,
        files=found.files,
        superseded=found.superseded,
        absent_indexed=found.absent,
        unreadable=found.unreadable,
        stored_bytes=stored,
        temporary=temporary,
        pack_bytes=sum(pack_sizes.values()),
        pack_mtimes=pack_mtimes,
        clock=clock,
        generations=found.generations,
        floor=found.floor,
    )


def _later(a: float | None, b: float | None) -> float | None:
    return b if a is None or (b is not None and b > a) else a


def _own_lock_time(storage: Storage, lock_name: str | None) -> float | None:
    if lock_name is None:
        return None
    try:
        return storage.stat(lock_name).mtime
    except DedupeError:
        return None


def temporary_files(storage: Storage, clock: float | None = None) -> list[Leftover]:
    """Leftover temporary files gc may delete, from backends that can leave them behind.

    In the folders dedupe's writers use (data/, index/, snapshots/) only those older than
    GRACE_SECONDS: gc holds the exclusive lock, but a writer whose lock it misjudged may be in
    the middle of a put. Elsewhere (locks/, keys/) those older than TEMP_GRACE_SECONDS, since a
    process may be taking a lock right now (without holding one).

    A backend measures a leftover's age with this machine's clock; where the storage's `clock`
    (see `Survey.clock`) is behind it, ages count that much less: never older than by either.
    """
    behind = 0.0 if clock is None else max(0.0, time.time() - clock)
    found = []
    for leftover in storage.list_leftovers():
        top = leftover.name.split("/")[0]
        limit = GRACE_SECONDS if top in _GC_FOLDERS else TEMP_GRACE_SECONDS
        if leftover.age - behind > limit:
            found.append(leftover)
    return found


def stored_bytes(storage: Storage) -> int:
    """Bytes of every repository object (locks and the space reserve excluded), plus leftover
    temporary files gc would delete."""
    total = 0
    for info in storage.list(""):
        if not (info.name.startswith("locks/") or info.name == reserve.RESERVE_NAME):
            total += info.size
    return total + sum(t.size for t in temporary_files(storage))


# --- the index ---------------------------------------------------------------------------------


@dataclass
class FoundIndex:
    """What gc found: the table of every entry of every present pack (named by a current index
    file, or read from its header) and the current index files."""

    table: EntryTable
    files: dict[str, list[int]]
    """Current index file -> the present packs it names, by number."""
    superseded: list[str]
    """Listed files that count for nothing: superseded, or below the floor (put back)."""
    absent: int
    """Packs the current index files name that are not in the repository."""
    unreadable: list[bytes]
    """Packs no index file names whose header cannot be read (left alone)."""
    generations: dict[str, Generation] = field(default_factory=dict)
    """Each current file's generation."""
    floor: int = 0
    """The index floor in force."""


def read_index(repo: Repository, pack_sizes: dict[bytes, int]) -> FoundIndex:
    """Build the sealed table from the index files and the headers of unindexed packs."""
    index_sizes = {i.name.split("/")[-1]: i.size for i in repo.storage.list("index/")}
    expected = sum(index_sizes.values()) // MIN_INDEX_BYTES_PER_ENTRY
    table, files, generations, absent = _read_files(repo, index_sizes, pack_sizes, expected)
    verdict = judge(generations)
    if files.keys() - set(verdict.current):
        # A file read early turned out superseded by one read later (an interrupted gc), or
        # below a floor met later (put back): read the current files again rather than hold
        # the rows that do not count or compact the table.
        current = {n: index_sizes[n] for n in verdict.current}
        del table, files  # one table at a time
        table, files, _gens, absent = _read_files(repo, current, pack_sizes, expected, verdict)
    unreadable = []
    for pack_id, size in pack_sizes.items():
        if table.number(pack_id) is not None:
            continue
        try:
            entries = read_pack_header(repo, pack_id, size)
        except (DamageError, StorageError):
            unreadable.append(pack_id)  # left alone: it is not ours to judge without a header
            continue
        fields = np.array([(e.offset, e.length, e.raw_length) for e in entries], dtype=np.uint32)
        ids = b"".join(e.blob_id for e in entries)
        table.add_pack(pack_id, size, False, ids, fields.reshape(-1, 3))
    table.seal()
    ignored = verdict.superseded | verdict.put_back
    return FoundIndex(
        table,
        files,
        sorted(n for n in index_sizes if n in ignored),
        len(absent),
        unreadable,
        {n: generations[n] for n in verdict.current},
        verdict.floor,
    )


def _read_files(
    repo: Repository,
    names: dict[str, int],
    pack_sizes: dict[bytes, int],
    expected: int,
    verdict: Verdict | None = None,
) -> tuple[EntryTable, dict[str, list[int]], dict[str, Generation], set[bytes]]:
    """Decode the index files one at a time into a table (files already known not to count
    are skipped; with a `verdict`, all files are known to): (table, packs per file read, every
    file's generation, absent packs named). A damaged file stops gc (DamageError): gc cannot tell
    what it names or supersedes; `dedupe repair index` rebuilds the index."""
    table = EntryTable(expected)
    files: dict[str, list[int]] = {}
    generations: dict[str, Generation] = {}
    superseded: set[str] = set()
    floor = verdict.floor if verdict is not None else 0
    absent: set[bytes] = set()
    for name in sorted(names):
        try:
            index_file = decode_index(repo.storage.get(f"index/{name}"), repo.sealer, name)
        except ObjectNotFound:
            continue
        generations[name] = index_file.generation
        floor = max(floor, index_file.floor)
        if index_file.gen >= floor:
            superseded.update(index_file.supersedes)
        if name in superseded or index_file.gen < floor:
            continue
        named = files[name] = []
        for column in index_file.columns:
            size = pack_sizes.get(column.pack_id)
            if size is None:
                absent.add(column.pack_id)
                continue
            named.append(table.add_pack(column.pack_id, size, True, column.ids, column.fields))
        del index_file
    return table, files, generations, absent


def read_pack_header(repo: Repository, pack_id: bytes, size: int) -> list[BlobEntry]:
    """The entries of a pack's own header (for packs no index names)."""
    name = pack_name(pack_id)
    offset, length = header_span(size, repo.storage.get(name, size - 4, 4))
    return decode_header(repo.storage.get(name, offset, length), repo.sealer, size)
