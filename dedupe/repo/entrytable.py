"""A compact table of index entries: every entry of many packs as numpy columns.

gc and check both hold every entry of a repository's index at once, and at tens of millions of
chunks they cannot afford a Python object per entry (a `BlobEntry` in a dict costs ~200 bytes, an
id in a set ~100). `EntryTable` keeps, per entry ("row"), the 32-byte blob id, a 32-bit pack number
and the offset, length and raw length: 48 bytes; once sealed, 12 more for the search keys and
order.

Rows come in pack by pack (from index files, or from the headers of packs no index file names)
and are sorted once, by `seal`, on the first 8 id bytes; a lookup compares the full id, so two ids
sharing a prefix are never confused. Rows holding the same id (copies in several packs, or one
pack named twice) form a group: contiguous in the sorted order, its first row the one appended
first, which is the row every lookup answers with. gc's planner resolves each group to one kept
copy (`dedupe.gc.plan`); check counts each group as one id.

Once sealed the table is a `SortedBase` (`dedupe.repo.index`): a `ChunkIndex` over it reads blobs
through it, packs no index file names included. Its rows come from authenticated index files and
pack headers, so it has nothing to verify and is never damaged.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import numpy as np

from dedupe.repo.index import Row

# Bytes an index file spends on an entry, at least: index bytes divided by this bound the entries
# to expect (the table is allocated once at that size).
MIN_INDEX_BYTES_PER_ENTRY = 44
_NO_ROWS = np.empty(0, dtype=np.int64)


class EntryTable:
    """Every entry of the packs added. Fill with `add_pack`, then `seal` once before any lookup."""

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
        # Set by `seal`: the rows' columns (views of the first `rows` rows), the sorted search
        # keys and the row order they follow, and the groups of rows sharing an id.
        self.ids = self._ids[:0]
        self.fields = self._fields[:0]
        self.pack = self._pack[:0]
        self._keys = np.empty(0, dtype=np.uint64)
        self._order: np.ndarray = np.empty(0, dtype=np.uint32)
        self.group_rows = _NO_ROWS
        """Rows of ids held by several rows, group after group (set by `seal`)."""
        self.group_starts = _NO_ROWS
        """Where each group starts in `group_rows`."""
        self._key_view = memoryview(b"").cast("Q")
        self._order_view = memoryview(b"").cast("I")
        self._id_view = memoryview(b"")

    # --- filling ---------------------------------------------------------------------------

    def number(self, pack_id: bytes) -> int | None:
        """The pack's number (its index in `pack_ids`), or None if no entry of it was added."""
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
        self.group_rows, self.group_starts = self._groups()
        self._key_view = self._keys.data.cast("B").cast("Q")
        self._order_view = self._order.data.cast("B").cast("I" if n < 1 << 32 else "q")
        self._id_view = self.ids.reshape(-1).data

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

    def distinct(self) -> int:
        """How many distinct ids the rows hold (after `seal`)."""
        return self.rows - len(self.group_rows) + len(self.group_starts)

    def find_row(self, blob_id: bytes) -> int:
        """The first row holding `blob_id`, or -1."""
        keys, n = self._key_view, len(self._key_view)
        key = int.from_bytes(blob_id[:8], "little")
        i = bisect.bisect_left(keys, key)
        while i < n and keys[i] == key:
            row = self._order_view[i]
            if self._id_view[32 * row : 32 * row + 32] == blob_id:
                return int(row)
            i += 1
        return -1

    def find(self, blob_id: bytes, verify_absent: bool = True) -> Row | None:
        row = self.find_row(blob_id)
        if row < 0:
            return None
        offset, length, raw_length = self.fields[row].tolist()
        return int(self.pack[row]), offset, length, raw_length

    def locate(self, query: np.ndarray) -> np.ndarray:
        """The first row holding each of these ids ((m, 32) uint8), or -1."""
        out = np.full(len(query), -1, dtype=np.int64)
        if not len(self._keys) or not len(query):
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
            out[j] = self.find_row(query[j].tobytes())
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

    # --- per pack -------------------------------------------------------------------------------

    def pack_sizes(self) -> np.ndarray:
        """Each pack's size in bytes (int64), by number."""
        return np.array(self._sizes, dtype=np.int64)

    def pack_indexed(self) -> np.ndarray:
        """Per pack: whether an index file named it (else its entries came from its header)."""
        return np.array(self._indexed, dtype=bool)

    def pack_rows(self, pack: int, mask: np.ndarray) -> np.ndarray:
        """The pack's rows selected by `mask` (a bool per row), in order."""
        parts = [np.arange(a, b)[mask[a:b]] for a, b in self._ranges[pack]]
        return np.concatenate(parts) if parts else _NO_ROWS

    # --- giving memory back -----------------------------------------------------------------

    def drop_lookups(self) -> None:
        """Drop the search keys and order (12 bytes a row): `find`, `locate`, `known` and
        `chunks` answer nothing afterwards. For a caller that looks up no id any more (gc,
        once marking is done)."""
        self._keys = np.empty(0, dtype=np.uint64)
        self._order = np.empty(0, dtype=np.uint32)
        self._key_view = memoryview(b"").cast("Q")
        self._order_view = memoryview(b"").cast("I")

    def drop_pack_numbers(self) -> None:
        """Drop each row's pack number and the groups: what remains is the ids, the fields and
        each pack's ranges of rows (`pack_rows`). For a caller that only reads packs' entries
        any more (gc, once planned: 60 MB fewer at ten million rows, while repacks fill packs)."""
        self._pack = self.pack = np.empty(0, dtype=np.uint32)
        self.group_rows = self.group_starts = _NO_ROWS
