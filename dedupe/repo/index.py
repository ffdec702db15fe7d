"""The chunk index: which pack holds each blob, where, and how big.

In memory it is the union of every index file. Index files are written only after the packs
they name are durable, and are replaced (gc) by writing a superseding file before deleting.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

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


class ChunkIndex:
    """blob id -> location, for every blob the repository's index files name.

    Compact by design (a few TB in small chunks is tens of millions of entries): the bulk lives in
    sorted numpy arrays, 56 bytes per blob (8-byte id prefix for the search, the full 32-byte
    id, and four 32-bit fields: pack number, offset, length, raw length). Blobs added since the
    last merge sit in a small dict; `merge` folds them in. Pack ids are stored once each.
    """

    MERGE_AT = 1 << 20

    def __init__(self) -> None:
        self._pack_ids: list[bytes] = []
        self._pack_numbers: dict[bytes, int] = {}
        self._keys = np.empty(0, dtype=np.uint64)
        self._ids = np.empty((0, 32), dtype=np.uint8)
        self._fields = np.empty((0, 4), dtype=np.uint32)
        self._recent: dict[bytes, tuple[int, int, int, int]] = {}
        self._views()

    def _pack_number(self, pack_id: bytes) -> int:
        number = self._pack_numbers.get(pack_id)
        if number is None:
            number = self._pack_numbers[pack_id] = len(self._pack_ids)
            self._pack_ids.append(pack_id)
        return number

    def add_pack(self, pack_id: bytes, entries: Iterable[BlobEntry]) -> None:
        number = self._pack_number(pack_id)
        recent = self._recent
        for e in entries:
            if e.blob_id not in recent and self._find(e.blob_id) < 0:
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
        self._pending_bulk.append((np.frombuffer(ids, dtype=np.uint8).reshape(n, 32), block))

    @property
    def _pending_bulk(self) -> list[tuple[np.ndarray, np.ndarray]]:
        bulk = self.__dict__.get("_bulk")
        if bulk is None:
            bulk = self.__dict__["_bulk"] = []
        return bulk

    def merge(self) -> None:
        """Fold recent and bulk entries into the sorted arrays (first entry of an id wins)."""
        parts_ids = [self._ids]
        parts_fields = [self._fields]
        if self._recent:
            n = len(self._recent)
            parts_ids.append(
                np.frombuffer(b"".join(self._recent.keys()), dtype=np.uint8).reshape(n, 32)
            )
            parts_fields.append(np.array(list(self._recent.values()), dtype=np.uint32))
        for ids, fields in self._pending_bulk:
            parts_ids.append(ids)
            parts_fields.append(fields)
        if len(parts_ids) == 1:
            return
        # Memory matters at tens of millions of entries: every source is released as soon as
        # it has been copied, and the arrays are reordered one at a time.
        self._recent = {}
        self._pending_bulk.clear()
        self._ids = self._fields = None  # type: ignore[assignment]
        ids = np.concatenate(parts_ids)
        del parts_ids
        fields = np.concatenate(parts_fields)
        del parts_fields
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
        self._keys, self._ids, self._fields = keys, ids, fields
        self._views()

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

    def __contains__(self, blob_id: bytes) -> bool:
        if self._pending_bulk:
            self.merge()
        return blob_id in self._recent or self._find(blob_id) >= 0

    def __len__(self) -> int:
        if self._pending_bulk:
            self.merge()
        return len(self._keys) + len(self._recent)

    def lookup(self, blob_id: bytes) -> Location | None:
        if self._pending_bulk:
            self.merge()
        item = self._recent.get(blob_id)
        if item is None:
            i = self._find(blob_id)
            if i < 0:
                return None
            fields = self._field_view
            number, offset, length, raw_length = fields[4 * i : 4 * i + 4]
        else:
            number, offset, length, raw_length = item
        return Location(self._pack_ids[number], offset, length, raw_length)

    def items(self) -> Iterator[tuple[bytes, Location]]:
        self.merge()
        pack_ids = self._pack_ids
        for i in range(len(self._keys)):
            number, offset, length, raw_length = (int(v) for v in self._fields[i])
            yield self._ids[i].tobytes(), Location(pack_ids[number], offset, length, raw_length)

    def pack_ids(self) -> list[bytes]:
        return list(self._pack_ids)


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


class IndexFile:
    """The decoded contents of one index file."""

    def __init__(self, columns: list[PackColumns], supersedes: list[str]) -> None:
        self.columns = columns
        self.supersedes = supersedes

    @cached_property
    def packs(self) -> list[tuple[bytes, list[BlobEntry]]]:
        """Entries as objects (for gc and check; loading the index uses the columns)."""
        return [(c.pack_id, c.entries()) for c in self.columns]


def encode_index(
    packs: list[tuple[bytes, list[BlobEntry]]], supersedes: list[str], sealer: Sealer
) -> bytes:
    columns = []
    for pack_id, entries in packs:
        fields = np.array(
            [(e.offset, e.length, e.raw_length) for e in entries], dtype="<u4"
        ).reshape(-1, 3)
        columns.append([pack_id, b"".join(e.blob_id for e in entries), fields.tobytes()])
    return sealer.seal(
        codec.pack({"v": codec.FORMAT_VERSION, "packs": columns, "supersedes": supersedes})
    )


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
    return IndexFile(columns, supersedes)
