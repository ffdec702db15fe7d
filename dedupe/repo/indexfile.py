"""The index file format: what one file in `index/` holds, and which files count.

An index file names packs and, per pack, its entries as columns (`PackColumns`): blob ids and
(offset, length, raw length). It is sealed like every repository object and named by the hash of
its bytes. Index files are written only after the packs they name are durable, and are replaced
(gc, repair) by writing a superseding file before deleting.

Which files are current (`judge`): every file carries a generation `gen` and a `floor`; the
highest floor of any listed file wins, and a file below it, or named in the `supersedes` of a file
at or above it, counts for nothing. gc's (and repair's) last file of a full replacement raises the
floor past every file it replaces, so an old index file put back into `index/` later (from an old
copy of the folder) can never name packs gc deleted since: it is below the floor, and nothing needs
to remember its name. `decode_index` checks every field it returns (a hostile or damaged file
raises FormatError or DamageError, never a bad entry).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from dedupe import codec
from dedupe.crypto.seal import Sealer
from dedupe.errors import FormatError
from dedupe.repo.pack import BlobEntry

ROW_BYTES = 48  # an entry as one row: 32-byte id, then u32 pack slot, offset, length, raw length


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


def _seal(packs: list[Any], supersedes: list[str], sealer: Sealer, gen: int, floor: int) -> bytes:
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
