"""gc's compact view of the index: every entry of every pack as numpy columns, and the bounded
index files gc writes in its place.

At tens of millions of chunks gc cannot afford a Python object per entry (a `BlobEntry` in a dict
costs ~200 bytes, an id in a set ~100). `EntryTable` keeps, per entry ("row"), the 32-byte blob
id, a 32-bit pack number and the offset, length and raw length: 48 bytes; once sorted, 12 more
for the search keys and order, and a byte or two of marks. Rows come in pack by pack (from the
index files, then from the headers of packs no index file names) and are sorted once by the first
8 id bytes; a lookup compares the full id, so two ids sharing a prefix are never confused. Rows
holding the same id (copies in several packs, or one pack named twice) form a group, which the
planner (`dedupe.gc.plan`) resolves to one kept copy. Marking (`dedupe.gc.mark`) flags the rows of
every blob a snapshot reaches, in batches of vectorised lookups.

`IndexFiles` tracks the current index files and which packs each names, and writes replacements
of at most `MAX_FILE_ENTRIES` entries each (whole packs). Only the last file of a replacement
supersedes the files it replaces: until that one is durable, the old files are still current and
name every pack the new ones name, so a crash at any instant leaves a complete index. Every file
gc writes has a generation above every current file's; the last file of a replacement of every
current file also raises the floor to it (`dedupe.repo.index.judge`), so no file gc replaced can
count again if put back from an old copy. A replacement of some files (a repack) cannot raise the
floor without disowning the others: its last file supersedes the replaced files and everything
they superseded (`Generation.inherits`), until the next full replacement.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dedupe.crypto.seal import content_hash
from dedupe.errors import DamageError, DedupeError, ObjectNotFound, OutOfSpace, StorageError
from dedupe.gc.plan import Entries, GcPlan, Packs
from dedupe.repo.index import (
    Generation,
    PackColumns,
    Row,
    Verdict,
    decode_index,
    encode_columns,
    judge,
)
from dedupe.repo.pack import BlobEntry, decode_header, header_span
from dedupe.repo.repository import Repository, pack_name

# Entries per index file gc writes (~4.4 MB; decoding one costs about three times that). A pack
# is never split, so a file holds more only when a single pack does.
MAX_FILE_ENTRIES = 100_000
# Data blob ids looked up per vectorised batch while marking.
MARK_BATCH = 1 << 16
# Bytes an index file spends on an entry, at least: an upper bound on the entries to expect.
MIN_INDEX_BYTES_PER_ENTRY = 44
_NO_ROWS = np.empty(0, dtype=np.int64)


class EntryTable:
    """Every entry of the packs gc sees. Fill with `add_pack`, then `seal` once; afterwards it is
    a `SortedBase` (`dedupe.repo.index`) for reading trees, and the marks for `reachable`."""

    def __init__(self, expected_rows: int = 0) -> None:
        capacity = max(1024, expected_rows)
        # Allocated, not touched: pages of rows never written cost no memory.
        self._ids = np.empty((capacity, 32), dtype=np.uint8)
        self._fields = np.empty((capacity, 3), dtype=np.uint32)
        self._pack = np.empty(capacity, dtype=np.uint32)
        self.rows = 0
        self.pack_ids: list[bytes] = []
        self._sizes: list[int] = []
        self._indexed: list[bool] = []
        self._numbers: dict[bytes, int] = {}
        self._ranges: list[list[tuple[int, int]]] = []
        self._sealed = False
        # The current index files' generations and the floor (`read_index` sets them), for the
        # replacements `IndexFiles` writes.
        self.generations: dict[str, Generation] = {}
        self.floor = 0

    # --- filling ---------------------------------------------------------------------------

    def number(self, pack_id: bytes) -> int | None:
        return self._numbers.get(pack_id)

    def add_pack(
        self, pack_id: bytes, size: int, indexed: bool, ids: bytes, fields: np.ndarray
    ) -> int:
        """Append one pack's entries (`ids` n*32 bytes, `fields` (n, 3) offset, length, raw
        length); a pack met again (named by two index files) adds a second range. Its number."""
        assert not self._sealed, "the table is sealed"
        number = self._numbers.get(pack_id)
        if number is None:
            number = self._numbers[pack_id] = len(self.pack_ids)
            self.pack_ids.append(pack_id)
            self._sizes.append(size)
            self._indexed.append(indexed)
            self._ranges.append([])
        self._indexed[number] |= indexed
        count = len(ids) // 32
        at = self.rows
        if at + count > len(self._pack):
            self._grow(at + count)
        self._ids[at : at + count] = np.frombuffer(ids, dtype=np.uint8).reshape(count, 32)
        self._fields[at : at + count] = fields
        self._pack[at : at + count] = number
        self._ranges[number].append((at, at + count))
        self.rows = at + count
        return number

    def _grow(self, needed: int) -> None:
        capacity = max(needed, len(self._pack) * 5 // 4)
        # In place (realloc): no second copy of the columns while growing.
        self._ids.resize((capacity, 32), refcheck=False)
        self._fields.resize((capacity, 3), refcheck=False)
        self._pack.resize(capacity, refcheck=False)

    def seal(self) -> None:
        """Sort for lookups and find the groups of rows sharing an id."""
        self._sealed = True
        n = self.rows
        self.ids, self.fields, self.pack = self._ids[:n], self._fields[:n], self._pack[:n]
        keys = np.ascontiguousarray(self.ids[:, :8]).view("<u8").reshape(-1)
        order = np.argsort(keys, kind="stable")  # rows of one id keep their order: indexed first
        self._order = order.astype(np.uint32) if n < 1 << 32 else order
        del order
        self._keys = keys[self._order]
        del keys
        self._group_rows, self._group_starts = self._groups()
        self._live = np.zeros(n, dtype=bool)
        self._walked = np.zeros(n, dtype=bool)
        self._pending: list[bytes] = []
        self._pending_ids = 0
        self._missing: list[np.ndarray] = []
        self._key_view = memoryview(self._keys).cast("B").cast("Q")
        self._order_view = memoryview(self._order).cast("B").cast(self._order.dtype.char)
        self._id_view = memoryview(self.ids.reshape(-1))

    def _groups(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows of ids held by several rows, group after group; where each group starts).
        Rows with equal 8-byte keys are re-sorted by full id, so a group is contiguous in the
        sorted order and its first row is the one appended first."""
        keys = self._keys
        equal = keys[1:] == keys[:-1]
        if not equal.any():
            return _NO_ROWS, _NO_ROWS
        in_run = np.zeros(len(keys), dtype=bool)
        in_run[1:] = equal
        in_run[:-1] |= equal
        positions = np.flatnonzero(in_run)
        rows = self._order[positions]
        words = self.ids[rows].view("<u8")  # (R, 4); the first word is the key
        by_id = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
        rows, words = rows[by_id], words[by_id]
        self._order[positions] = rows  # the same keys at the same places, by id within them
        starts = np.ones(len(rows), dtype=bool)
        starts[1:] = (words[1:] != words[:-1]).any(axis=1)
        first = np.flatnonzero(starts)
        sizes = np.diff(np.append(first, len(rows)))
        several = sizes > 1
        group_rows = rows[np.repeat(several, sizes)].astype(np.int64)
        group_starts = np.concatenate(([0], np.cumsum(sizes[several])[:-1])).astype(np.int64)
        return group_rows, group_starts

    # --- lookups (SortedBase) -----------------------------------------------------------------

    def __len__(self) -> int:
        return self.rows

    def _find_row(self, blob_id: bytes) -> int:
        keys, n = self._key_view, self.rows
        key = int.from_bytes(blob_id[:8], "little")
        i = bisect.bisect_left(keys, key)
        while i < n and keys[i] == key:
            row = self._order_view[i]
            if self._id_view[32 * row : 32 * row + 32] == blob_id:
                return row
            i += 1
        return -1

    def find(self, blob_id: bytes, verify_absent: bool = True) -> Row | None:
        row = self._find_row(blob_id)
        if row < 0:
            return None
        offset, length, raw_length = self.fields[row].tolist()
        return int(self.pack[row]), offset, length, raw_length

    def locate(self, query: np.ndarray) -> np.ndarray:
        """The first row holding each of these ids ((m, 32) uint8), or -1."""
        out = np.full(len(query), -1, dtype=np.int64)
        if not self.rows or not len(query):
            return out
        qkeys = np.ascontiguousarray(query[:, :8]).view("<u8").reshape(-1)
        by_key = np.argsort(qkeys)  # sorted queries search faster (numpy reuses bounds)
        at = np.searchsorted(self._keys, qkeys[by_key])
        hit = at < self.rows
        at[~hit] = 0
        hit &= self._keys[at] == qkeys[by_key]
        rows = self._order[at].astype(np.int64)
        same = np.zeros(len(query), dtype=bool)
        same[hit] = (self.ids[rows[hit]] == query[by_key[hit]]).all(axis=1)
        out[by_key[same]] = rows[same]
        for j in by_key[hit & ~same]:  # an equal key, another id first: rare, scan the run
            out[j] = self._find_row(query[j].tobytes())
        return out

    def known(self, keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self.locate(ids) >= 0

    def verify_all(self) -> None:
        """Nothing to verify: the rows come from authenticated index files and pack headers."""

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, self.rows, 1 << 20):
            rows = self._order[start : start + (1 << 20)]
            fields = np.empty((len(rows), 4), dtype=np.uint32)
            fields[:, 0] = self.pack[rows]
            fields[:, 1:] = self.fields[rows]
            yield self.ids[rows], fields

    # --- marks (dedupe.gc.mark.Marks) ---------------------------------------------------------

    def visit_tree(self, tree_id: bytes) -> bool:
        row = self._find_row(tree_id)
        if row < 0:
            return True  # reading it fails, and gc stops before deleting anything
        if self._walked[row]:
            return False
        self._walked[row] = self._live[row] = True
        return True

    def add_data(self, blob_ids: Sequence[bytes]) -> None:
        self._pending.append(b"".join(blob_ids))
        self._pending_ids += len(blob_ids)
        if self._pending_ids >= MARK_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        query = np.frombuffer(b"".join(self._pending), dtype=np.uint8).reshape(-1, 32)
        self._pending, self._pending_ids = [], 0
        rows = self.locate(query)
        self._live[rows[rows >= 0]] = True
        if (rows < 0).any():
            self._missing.append(query[rows < 0].copy())

    def finish_mark(self) -> int:
        """Spread the marks to every copy of a reached blob; drop the search structures (gc
        reads no blob by id after marking). Returns how many reached ids are in no pack."""
        self._flush()
        if len(self._group_rows):
            live = np.logical_or.reduceat(self._live[self._group_rows], self._group_starts)
            sizes = np.diff(np.append(self._group_starts, len(self._group_rows)))
            self._live[self._group_rows] = np.repeat(live, sizes)
        missing = 0
        if self._missing:
            ids = np.concatenate(self._missing)
            missing = len(np.unique(ids.view(np.dtype((np.void, 32)))))
        self._missing = []
        self._keys = self._order = None  # type: ignore[assignment]
        self._key_view = self._order_view = memoryview(b"")
        return missing

    # --- for the planner and the executor --------------------------------------------------------

    def entries(self) -> Entries:
        return Entries(
            pack=self.pack,
            length=self.fields[:, 1],
            live=self._live,
            group_rows=self._group_rows,
            group_starts=self._group_starts,
        )

    def packs(self) -> Packs:
        return Packs(
            pack_ids=self.pack_ids,
            sizes=np.array(self._sizes, dtype=np.int64),
            indexed=np.array(self._indexed, dtype=bool),
        )

    def release_marks(self) -> None:
        """Once planned, gc needs only ids, fields and each pack's ranges (60 MB fewer at ten
        million rows, while repacks fill their packs)."""
        self._pack = self.pack = self._live = self._walked = None  # type: ignore[assignment]
        self._group_rows = self._group_starts = _NO_ROWS

    def pack_rows(self, pack: int, mask: np.ndarray) -> np.ndarray:
        """The pack's rows selected by `mask` (a bool per row), in order."""
        parts = [np.arange(a, b)[mask[a:b]] for a, b in self._ranges[pack]]
        return np.concatenate(parts) if parts else _NO_ROWS


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
    table.generations = {n: generations[n] for n in verdict.current}
    table.floor = verdict.floor
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
        table, files, sorted(n for n in index_sizes if n in ignored), len(absent), unreadable
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


@dataclass
class _File:
    packs: list[int]
    entries: int


class IndexFiles:
    """The current index files and the packs each names; writes bounded replacements.

    Packs are numbered as in the table; packs this gc writes get numbers after those, and their
    entries are kept as columns (44 bytes an entry) in case a later batch rewrites their file.
    """

    def __init__(
        self,
        repo: Repository,
        table: EntryTable,
        plan: GcPlan,
        files: dict[str, list[int]],
    ) -> None:
        self.repo = repo
        self.table = table
        self.named = plan.named
        self.counts = plan.named_count
        self._new: dict[int, PackColumns] = {}
        self.files: dict[str, _File] = {}
        self._naming: dict[int, set[str]] = {}  # pack -> the current files that name it
        # Current file -> its generation; the floor in force; the highest gen or floor so far.
        self.generations = {n: table.generations.get(n, Generation()) for n in files}
        self.floor = table.floor
        self.top = max([table.floor, *(max(g.gen, g.floor) for g in self.generations.values())])
        for name, packs in files.items():
            self._register(name, packs)
        self.deleted = 0

    def _register(self, name: str, packs: list[int]) -> None:
        self.files[name] = _File(packs, self._entries(packs))
        for pack in packs:
            self._naming.setdefault(pack, set()).add(name)

    def _unregister(self, name: str) -> None:
        self.generations.pop(name, None)
        gone = self.files.pop(name, None)
        for pack in gone.packs if gone is not None else ():
            self._naming[pack].discard(name)

    def pack_id(self, pack: int) -> bytes:
        if pack < len(self.table.pack_ids):
            return self.table.pack_ids[pack]
        return self._new[pack].pack_id

    def _count(self, pack: int) -> int:
        new = self._new.get(pack)
        return int(self.counts[pack]) if new is None else len(new.ids) // 32

    def _entries(self, packs: Iterable[int]) -> int:
        return sum(self._count(p) for p in packs)

    def add_new_pack(self, columns: PackColumns) -> int:
        """Register a pack this gc wrote (durably); its number."""
        number = len(self.table.pack_ids) + len(self._new)
        self._new[number] = columns
        return number

    def naming(self, packs: Iterable[int]) -> list[str]:
        """The current files that name any of `packs`."""
        found: set[str] = set()
        for pack in packs:
            found |= self._naming.get(pack, set())
        return sorted(found)

    def entries_of(self, names: Iterable[str]) -> tuple[int, int]:
        """(packs, entries) the files name."""
        chosen = [self.files[n] for n in names]
        return sum(len(f.packs) for f in chosen), sum(f.entries for f in chosen)

    def columns(self, pack: int) -> PackColumns:
        new = self._new.get(pack)
        if new is not None:
            return new
        rows = self.table.pack_rows(pack, self.named)
        return PackColumns(
            self.pack_id(pack), self.table.ids[rows].tobytes(), self.table.fields[rows]
        )

    def replace(self, drop: Sequence[int], add: Sequence[int]) -> None:
        """Files naming what the files naming `drop` name, minus `drop`, plus `add`."""
        affected = self.naming(drop)
        dropped = set(drop)
        keep = [p for name in affected for p in self.files[name].packs if p not in dropped]
        self.commit([*dict.fromkeys(keep), *add], affected)

    def commit(self, packs: Sequence[int], replaced: Sequence[str]) -> None:
        """Name `packs` in new files of at most MAX_FILE_ENTRIES entries, the last superseding
        `replaced`; then delete `replaced`. On OutOfSpace the files written so far are deleted
        again (they name only packs that `replaced` or other current files name, or packs this
        gc wrote; any that cannot be deleted stay registered as current) and it is raised.

        The new files' generation is above every current file's. When `replaced` is every
        current file, the last one also raises the floor to that generation: from then on no
        replaced file counts, even put back. Otherwise the last one supersedes what the replaced
        files superseded too (those that carry it forward, `Generation.inherits`)."""
        gen = self.top + 1
        full = set(replaced) >= self.files.keys()
        supersedes = set(replaced)
        if not full:
            for name in replaced:
                g = self.generations.get(name, Generation())
                supersedes.update(g.supersedes if g.inherits else ())
        last = Generation(gen, gen if full else self.floor, tuple(sorted(supersedes)))
        groups: list[list[int]] = [[]]
        entries = 0
        for pack in packs:
            count = self._count(pack)
            if groups[-1] and entries + count > MAX_FILE_ENTRIES:
                groups.append([])
                entries = 0
            groups[-1].append(pack)
            entries += count
        written: list[tuple[str, list[int], Generation]] = []
        try:
            for i, group in enumerate(groups):
                # Only the last file supersedes (and raises the floor): until it is durable the
                # replaced files are current and name everything the new ones name.
                g = last if i == len(groups) - 1 else Generation(gen, self.floor)
                written.append((self._put([self.columns(p) for p in group], g), group, g))
        except OutOfSpace:
            for name, group, g in written:
                if not self._delete_quietly(name):
                    self._register(name, group)
                    self.generations[name] = g
            self.top = gen
            raise
        for name, group, g in written:
            self._register(name, group)
            self.generations[name] = g
        self.top, self.floor = gen, last.floor
        self.delete(replaced)

    def _put(self, columns: list[PackColumns], g: Generation) -> str:
        data = encode_columns(columns, list(g.supersedes), self.repo.sealer, g.gen, g.floor)
        name = content_hash(data).hex()
        self.repo.storage.put(f"index/{name}", data)
        return name

    def delete(self, names: Iterable[str]) -> None:
        for name in list(names):
            try:
                self.repo.storage.delete(f"index/{name}")
                self.deleted += 1
            except ObjectNotFound:
                pass
            self._unregister(name)

    def _delete_quietly(self, name: str) -> bool:
        try:
            self.repo.storage.delete(f"index/{name}")
        except ObjectNotFound:
            pass
        except DedupeError:
            return False
        return True
