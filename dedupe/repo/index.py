"""The chunk index: which pack holds each blob, where, and how big.

It is the union of every current index file: in memory, or mostly in the memory-mapped local cache
(`dedupe.repo.indexcache`) with the newer files in memory. Index files are written only after the
packs they name are durable, and are replaced (gc) by writing a superseding file before deleting.

Which files are current (`judge`): every file carries a generation `gen` and a `floor`; the
highest floor of any listed file wins, and a file below it, or named in the `supersedes` of a file
at or above it, counts for nothing. gc's (and repair's) last file of a full replacement raises the
floor past every file it replaces, so an old index file put back into `index/` later (from an old
copy of the folder) can never name packs gc deleted since: it is below the floor, and nothing needs
to remember its name.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from dedupe import codec
from dedupe.crypto.seal import Sealer
from dedupe.errors import FormatError
from dedupe.repo.pack import BlobEntry


@dataclass(frozen=True, slots=True)
class Location:
    """A blob's place in the repository."""

    pack_id: bytes
    offset: int
    length: int
    raw_length: int


Row = tuple[int, int, int, int]  # pack number, offset, length, raw length
ROW_BYTES = 48  # an entry as one row: 32-byte id, then its Row as little-endian u32


class BaseDamaged(Exception):
    """A base table's bytes failed verification while being read (see `SortedBase`)."""


class SortedBase(Protocol):
    """A read-only table of entries beneath a ChunkIndex's own (the local cache,
    `dedupe.repo.indexcache`). It verifies what it reads and raises BaseDamaged when that fails;
    its pack numbers index `pack_ids`, which the ChunkIndex extends for its own entries."""

    pack_ids: list[bytes]

    def __len__(self) -> int: ...

    def find(self, blob_id: bytes, verify_absent: bool = True) -> Row | None:
        """The entry of `blob_id`, verified. Without `verify_absent`, an answer of None may
        come from unverified bytes: enough where a false "absent" only costs storing again."""
        ...

    def known(self, keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """A boolean mask: which of these (sorted or not) ids the table holds."""
        ...

    def verify_all(self) -> None: ...

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, fields) of every entry in order, in chunks; call `verify_all` first."""
        ...


def sort_unique(ids: np.ndarray, fields: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by key (the first 8 id bytes as a little-endian integer), keeping the first
    row of each id: (keys, ids, fields). Pure; the merge of the index and of its cache file."""
    keys = ids[:, :8].copy().view("<u8").reshape(-1)
    # Sort by prefix, keeping the first occurrence of each id (a stable sort).
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    ids = ids[order]
    fields = fields[order]
    del order
    if len(keys) > 1:
        same_key = keys[1:] == keys[:-1]
        if same_key.any():
            dup = np.zeros(len(keys), dtype=bool)
            for i in np.nonzero(same_key)[0] + 1:
                # equal prefixes are rare: compare full ids against earlier equal keys
                j = i - 1
                while j >= 0 and keys[j] == keys[i]:
                    if not dup[j] and (ids[j] == ids[i]).all():
                        dup[i] = True
                        break
                    j -= 1
            keep = ~dup
            keys, ids, fields = keys[keep], ids[keep], fields[keep]
    return keys, ids, fields


class ChunkIndex:
    """blob id -> location, for every blob the repository's index files name.

    Compact by design (a few TB in small chunks is tens of millions of entries): the bulk lives in
    sorted numpy arrays, 56 bytes per blob (8-byte id prefix for the search, the full 32-byte
    id, and four 32-bit fields: pack number, offset, length, raw length). Blobs added since the
    last merge sit in a small dict; `merge` folds them in. Pack ids are stored once each.

    With a `base` (the memory-mapped local cache), those arrays hold only what the base lacks
    (index files newer than the cache, packs written by this process), and lookups check both.
    An id is in at most one of them. If the base fails verification, `recover` (a load from the
    repository's own index files) replaces it, so a damaged cache costs time, never an entry.
    """

    MERGE_AT = 1 << 20

    def __init__(
        self,
        base: SortedBase | None = None,
        recover: Callable[[], ChunkIndex] | None = None,
    ) -> None:
        if base is not None and recover is None:
            raise ValueError("an index over a base needs a way to recover from its damage")
        self._recover = recover
        self._fallback_lock = threading.Lock()
        self._base = base
        self._pack_ids: list[bytes] = list(base.pack_ids) if base is not None else []
        self._pack_numbers = {pack_id: n for n, pack_id in enumerate(self._pack_ids)}
        self._keys = np.empty(0, dtype=np.uint64)
        self._ids = np.empty((0, 32), dtype=np.uint8)
        self._fields = np.empty((0, 4), dtype=np.uint32)
        self._recent: dict[bytes, Row] = {}
        self._bulk: list[tuple[np.ndarray, np.ndarray]] = []
        self._views()

    @property
    def base(self) -> SortedBase | None:
        return self._base

    def _pack_number(self, pack_id: bytes) -> int:
        number = self._pack_numbers.get(pack_id)
        if number is None:
            number = self._pack_numbers[pack_id] = len(self._pack_ids)
            self._pack_ids.append(pack_id)
        return number

    def add_pack(self, pack_id: bytes, entries: Iterable[BlobEntry]) -> None:
        entries = list(entries)
        try:
            self._add_pack(pack_id, entries)
        except BaseDamaged:
            self._fall_back()
            self._add_pack(pack_id, entries)

    def _add_pack(self, pack_id: bytes, entries: list[BlobEntry]) -> None:
        number = self._pack_number(pack_id)
        recent = self._recent
        base = self._base
        for e in entries:
            if (
                e.blob_id not in recent
                and self._find(e.blob_id) < 0
                and (base is None or base.find(e.blob_id, False) is None)
            ):
                recent[e.blob_id] = (number, e.offset, e.length, e.raw_length)
        if len(recent) >= self.MERGE_AT:
            self.merge()

    def add_bulk(self, pack_id: bytes, ids: bytes, fields: np.ndarray) -> None:
        """Add many entries at once: `ids` is n*32 bytes, `fields` an (n, 3) array of offset,
        length, raw length. Duplicates of known blobs are dropped at the next merge."""
        number = self._pack_number(pack_id)
        n = len(ids) // 32
        block = np.empty((n, 4), dtype=np.uint32)
        block[:, 0] = number
        block[:, 1:] = fields
        self._bulk.append((np.frombuffer(ids, dtype=np.uint8).reshape(n, 32), block))

    def merge(self) -> None:
        """Fold recent and bulk entries into the sorted arrays (first entry of an id wins)."""
        try:
            self._merge()
        except BaseDamaged:
            self._fall_back()

    def _merge(self) -> None:
        parts_ids = [self._ids]
        parts_fields = [self._fields]
        if self._recent:
            n = len(self._recent)
            parts_ids.append(
                np.frombuffer(b"".join(self._recent.keys()), dtype=np.uint8).reshape(n, 32)
            )
            parts_fields.append(np.array(list(self._recent.values()), dtype=np.uint32))
        for ids, fields in self._bulk:
            parts_ids.append(ids)
            parts_fields.append(fields)
        if len(parts_ids) == 1:
            return
        # Memory matters at tens of millions of entries: every source is released as soon as
        # it has been copied, and the arrays are reordered one at a time.
        self._recent = {}
        self._bulk = []
        self._ids = self._fields = None  # type: ignore[assignment]
        ids = np.concatenate(parts_ids)
        del parts_ids
        fields = np.concatenate(parts_fields)
        del parts_fields
        self._keys, self._ids, self._fields = sort_unique(ids, fields)
        self._views()
        if self._base is not None and len(self._keys):
            # Entries the base has already (an index file written after the cache naming a
            # blob the cache knows) stay the base's: an id lives in one place only.
            known = self._base.known(self._keys, self._ids)
            if known.any():
                keep = ~known
                self._keys, self._ids = self._keys[keep], self._ids[keep]
                self._fields = self._fields[keep]
                self._views()

    def _fall_back(self) -> None:
        """Replace a base that failed verification by the repository's own index files, keeping
        this index's entries (they are in those files too, unless a writer just added them)."""
        with self._fallback_lock:
            if self._base is None:
                return  # another thread did it
            assert self._recover is not None
            fresh = self._recover()
            ids, fields = self._own_rows()
            if len(ids):
                numbers = np.array([fresh._pack_number(p) for p in self._pack_ids], np.uint32)
                fields[:, 0] = numbers[fields[:, 0]]
                fresh._bulk.append((ids, fields))
            fresh.merge()
            # One dict update: a thread looking up meanwhile sees the old state or the new one.
            state = {k: v for k, v in fresh.__dict__.items() if k not in _OWN}
            self.__dict__.update(state)

    def _own_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every entry held outside the base, unmerged: (ids, fields)."""
        ids = [self._ids] + [b[0] for b in self._bulk]
        fields = [self._fields] + [b[1] for b in self._bulk]
        if self._recent:
            n = len(self._recent)
            ids.append(np.frombuffer(b"".join(self._recent), dtype=np.uint8).reshape(n, 32))
            fields.append(np.array(list(self._recent.values()), dtype=np.uint32))
        return np.concatenate(ids), np.concatenate(fields)

    def _views(self) -> None:
        # Plain memoryviews: bisect and slicing on them cost about a microsecond, where numpy
        # scalar calls cost several.
        self._key_view = (
            memoryview(
                np.ascontiguousarray(self._keys).tobytes()
                if not len(self._keys)
                else np.ascontiguousarray(self._keys)
            )
            .cast("B")
            .cast("Q")
        )
        self._id_view = memoryview(np.ascontiguousarray(self._ids).reshape(-1))
        fields = np.ascontiguousarray(self._fields, dtype=np.uint32).reshape(-1)
        self._field_view = (
            memoryview(fields).cast("B").cast("I") if len(fields) else memoryview(b"").cast("I")
        )

    def _find(self, blob_id: bytes) -> int:
        keys = self._key_view
        n = len(keys)
        if not n:
            return -1
        key = int.from_bytes(blob_id[:8], "little")
        i = bisect.bisect_left(keys, key)
        ids = self._id_view
        while i < n and keys[i] == key:
            if ids[i * 32 : i * 32 + 32] == blob_id:
                return i
            i += 1
        return -1

    def _row(self, blob_id: bytes, verify_absent: bool = True) -> Row | None:
        if self._bulk:
            self.merge()
        row = self._recent.get(blob_id)
        if row is not None:
            return row
        i = self._find(blob_id)
        if i >= 0:
            number, offset, length, raw_length = self._field_view[4 * i : 4 * i + 4]
            return number, offset, length, raw_length
        base = self._base
        if base is None:
            return None
        try:
            return base.find(blob_id, verify_absent)
        except BaseDamaged:
            self._fall_back()
            return self._row(blob_id)

    def __contains__(self, blob_id: bytes) -> bool:
        # Writers ask this before storing a blob: a false "absent" would only store it again,
        # so an absent answer from the base needs no verification; a present one always has.
        return self._row(blob_id, verify_absent=False) is not None

    def __len__(self) -> int:
        if self._bulk:
            self.merge()
        base = len(self._base) if self._base is not None else 0
        return base + len(self._keys) + len(self._recent)

    def lookup(self, blob_id: bytes) -> Location | None:
        row = self._row(blob_id)
        if row is None:
            return None
        number, offset, length, raw_length = row
        return Location(self._pack_ids[number], offset, length, raw_length)

    def items(self) -> Iterator[tuple[bytes, Location]]:
        self.merge()
        if self._base is not None:
            try:
                self._base.verify_all()  # before the first item: a fall-back cannot restart
            except BaseDamaged:
                self._fall_back()
        pack_ids = self._pack_ids
        chunks = self._base.chunks() if self._base is not None else iter(())
        for ids, fields in itertools.chain(chunks, [(self._ids, self._fields)]):
            id_bytes = np.ascontiguousarray(ids).tobytes()
            for i, (number, offset, length, raw_length) in enumerate(fields.tolist()):
                location = Location(pack_ids[number], offset, length, raw_length)
                yield id_bytes[32 * i : 32 * i + 32], location

    def own_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sorted (keys, ids, fields) held outside the base (merged first)."""
        self.merge()
        return self._keys, self._ids, self._fields

    def pack_ids(self) -> list[bytes]:
        return list(self._pack_ids)


# Attributes a fall-back keeps (the rest is replaced by the recovered index's state).
_OWN = frozenset({"_recover", "_fallback_lock"})


@dataclass(frozen=True)
class PackColumns:
    """One pack's entries as columns: ids (n * 32 bytes) and an (n, 3) uint32 array of
    offset, length and raw length. Columns keep a 10-million-entry index cheap to load."""

    pack_id: bytes
    ids: bytes
    fields: np.ndarray

    def entries(self) -> list[BlobEntry]:
        ids = self.ids
        return [
            BlobEntry(ids[32 * i : 32 * i + 32], int(o), int(n), int(r))
            for i, (o, n, r) in enumerate(self.fields.tolist())
        ]


@dataclass(frozen=True, slots=True)
class Generation:
    """What decides whether an index file is current: its generation, the floor it carries (no
    file below the highest floor counts) and the files it supersedes. Files of the first format
    carry neither number: both are 0."""

    gen: int = 0
    floor: int = 0
    supersedes: tuple[str, ...] = ()

    @property
    def inherits(self) -> bool:
        """Whether a file replacing only this one (a repack) must supersede what this one does.
        A file that raised the floor (floor == gen > 0) superseded only files below its floor,
        which the floor itself keeps out; every other file's list must be carried forward, or a
        file it named could come back (put back from an old copy) once it is replaced."""
        return self.floor < self.gen or self.gen == 0


@dataclass(frozen=True)
class Verdict:
    """Which listed index files count (`judge`)."""

    floor: int
    current: list[str]
    """In the order given."""
    superseded: set[str]
    """Named by a file at or above the floor (left by an interrupted gc or repair)."""
    put_back: set[str]
    """Below the floor and named by no such file: put back from an old copy of `index/`."""
    top: int
    """The highest gen or floor of any file: a replacement is written with `top + 1`."""


def judge(files: Mapping[str, Generation]) -> Verdict:
    """Current, superseded and put-back files among `files` (name -> Generation). Pure."""
    floor = max((g.floor for g in files.values()), default=0)
    top = max((max(g.gen, g.floor) for g in files.values()), default=0)
    # A file below the floor supersedes nothing: whatever it names is older still.
    superseded = {s for g in files.values() if g.gen >= floor for s in g.supersedes}
    current, put_back = [], set()
    for name, g in files.items():
        if name in superseded:
            continue
        if g.gen < floor:
            put_back.add(name)
        else:
            current.append(name)
    return Verdict(floor, current, superseded & files.keys(), put_back, top)


class IndexFile:
    """The decoded contents of one index file."""

    def __init__(
        self, columns: list[PackColumns], supersedes: list[str], gen: int = 0, floor: int = 0
    ) -> None:
        self.columns = columns
        self.supersedes = supersedes
        self.gen = gen
        self.floor = floor

    @property
    def generation(self) -> Generation:
        return Generation(self.gen, self.floor, tuple(self.supersedes))

    @cached_property
    def packs(self) -> list[tuple[bytes, list[BlobEntry]]]:
        """Entries as objects (for gc and check; loading the index uses the columns)."""
        return [(c.pack_id, c.entries()) for c in self.columns]

    def rows(self, first_slot: int) -> np.ndarray:
        """Every entry as a ROW_BYTES row: the id, then u32 slot, offset, length, raw length,
        where pack i of this file is slot `first_slot + i` (the local cache's cold build)."""
        count = sum(len(c.ids) // 32 for c in self.columns)
        rows = np.empty((count, ROW_BYTES), dtype=np.uint8)
        fields = np.empty((count, 4), dtype="<u4")
        at = 0
        for slot, column in enumerate(self.columns, first_slot):
            n = len(column.ids) // 32
            rows[at : at + n, :32] = np.frombuffer(column.ids, dtype=np.uint8).reshape(n, 32)
            fields[at : at + n, 0] = slot
            fields[at : at + n, 1:] = column.fields
            at += n
        rows[:, 32:] = fields.view(np.uint8).reshape(count, 16)
        return rows


def _seal(packs: list, supersedes: list[str], sealer: Sealer, gen: int, floor: int) -> bytes:
    if not 0 <= floor <= gen:
        raise ValueError(f"an index file's floor ({floor}) must lie in 0..gen ({gen})")
    body = {"v": codec.FORMAT_VERSION, "packs": packs, "supersedes": supersedes}
    return sealer.seal(codec.pack(body | {"gen": gen, "floor": floor}))


def encode_index(
    packs: list[tuple[bytes, list[BlobEntry]]],
    supersedes: list[str],
    sealer: Sealer,
    gen: int = 0,
    floor: int = 0,
) -> bytes:
    columns = []
    for pack_id, entries in packs:
        fields = np.array(
            [(e.offset, e.length, e.raw_length) for e in entries], dtype="<u4"
        ).reshape(-1, 3)
        columns.append([pack_id, b"".join(e.blob_id for e in entries), fields.tobytes()])
    return _seal(columns, supersedes, sealer, gen, floor)


def encode_columns(
    columns: Iterable[PackColumns],
    supersedes: list[str],
    sealer: Sealer,
    gen: int = 0,
    floor: int = 0,
) -> bytes:
    """`encode_index` for packs given as columns: no object per entry (gc writes its index
    files this way)."""
    packs = [
        [c.pack_id, c.ids, np.ascontiguousarray(c.fields, dtype="<u4").tobytes()] for c in columns
    ]
    return _seal(packs, supersedes, sealer, gen, floor)


def decode_index(data: bytes, sealer: Sealer, name: str) -> IndexFile:
    what = f"index file {name}"
    obj = codec.check_version(codec.unpack(sealer.open(data, what), what), what)
    columns = []
    for item in codec.field(obj, "packs", list, what):
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not isinstance(item[1], bytes)
            or not isinstance(item[2], bytes)
        ):
            raise FormatError(f"{what}: malformed pack entry")
        pack_id = codec.blob_id(item[0], what)
        ids, raw_fields = item[1], item[2]
        count = len(ids) // 32
        if len(ids) != 32 * count or len(raw_fields) != 12 * count:
            raise FormatError(f"{what}: pack entry columns do not agree")
        fields = np.frombuffer(raw_fields, dtype="<u4").reshape(count, 3)
        # The same checks as for one entry (pack.entry_from_list), on whole columns.
        if count and (
            (fields[:, 1] <= 40).any()
            or (fields[:, 2] > (1 << 31)).any()
            or (fields[:, 0].astype(np.uint64) + fields[:, 1] >= (1 << 32)).any()
        ):
            raise FormatError(f"{what}: implausible blob entry")
        columns.append(PackColumns(pack_id, ids, fields))
    supersedes = codec.field(obj, "supersedes", list, what)
    if not all(isinstance(s, str) and len(s) == 64 for s in supersedes):
        raise FormatError(f"{what}: malformed supersedes list")
    # Absent in files written before generations existed: 0.
    gen = codec.opt_field(obj, "gen", int, what, 0)
    floor = codec.opt_field(obj, "floor", int, what, 0)
    if not 0 <= floor <= gen < (1 << 63):
        raise FormatError(f"{what}: implausible generation")
    return IndexFile(columns, supersedes, gen, floor)
