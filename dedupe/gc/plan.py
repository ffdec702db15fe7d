"""gc planning: a pure function from (entries, packs, max_unused) to what gc will do.

No storage, no clock, no randomness: gc's survey and mark gather the facts (as numpy columns, one
row per index entry, so that tens of millions of chunks cost tens of bytes each; see
`dedupe.repo.entrytable` and `dedupe.gc.mark`), `dedupe.gc.collect` calls `make_plan`, and
`dedupe.gc.execute` carries the plan out. Keeping the decision pure makes the rules testable:

- Each live blob keeps exactly one copy. Copies in indexed packs are preferred over copies in
  packs no index names, then the pack holding the most live bytes, then the lowest pack id.
- A blob listed twice in one pack (or a pack named by two index files) counts once.
- An indexed pack holding no kept copy is garbage and is deleted whole (no writes needed).
- A pack no index names is a leftover of an interrupted write: deleted if it holds no kept copy,
  else adopted (a lost index file must not cost a live chunk) and named by the new index.
- Unless it is young (`Packs.young`: written within gc's grace period, so possibly by a backup
  still running whose index and manifest are yet to come): a young unindexed pack is left alone
  whole (its blobs count as live, it is neither deleted, repacked nor named by the new index, so
  a later gc still judges it as unindexed once it is old). A copy elsewhere is kept in preference
  to one in a young pack. Indexed packs are judged the same whatever their age.
- A pack whose unused share (bytes of blobs that are dead or duplicated elsewhere, relative to
  the pack's size) exceeds `max_unused` is repacked; `max_unused=0` repacks any unused byte.
- Repacks are ordered by bytes freed per byte written (smallest live share first), so that a gc
  with little free space does the most rewarding work first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dedupe.repo.pack import TRAILER

# What a pack costs beyond its blobs: the sealed header (~46 bytes a blob plus the seal) and the
# trailer. Used to estimate the bytes a repack writes.
HEADER_BYTES_PER_BLOB = 48
HEADER_FIXED_BYTES = 64 + TRAILER.size
# What an index file costs a pack and a blob (msgpack of ids and ints, sealed).
INDEX_BYTES_PER_BLOB = 48
INDEX_BYTES_PER_PACK = 40
_STEP = 1 << 20  # rows per step of a per-pack sum (bounds the temporary arrays)


@dataclass(frozen=True, eq=False)
class Entries:
    """One row per index entry (or pack header entry) gc has seen."""

    pack: np.ndarray
    """Pack number of each row (an index into `Packs`)."""
    length: np.ndarray
    """Stored length of each row's blob."""
    live: np.ndarray
    """True for every row of a blob some snapshot reaches (all its copies)."""
    group_rows: np.ndarray
    """Rows of blob ids held by several rows, group after group (one group per id)."""
    group_starts: np.ndarray
    """Where each group starts in `group_rows`."""


@dataclass(frozen=True, eq=False)
class Packs:
    """One item per pack number."""

    pack_ids: Sequence[bytes]
    sizes: np.ndarray
    indexed: np.ndarray
    """False for packs no current index file names (their entries come from their header)."""
    young: np.ndarray | None = None
    """True for packs written within gc's grace period (None: none is). Only matters for packs
    no index names: those are kept whole, whatever the snapshots reference."""


@dataclass(frozen=True)
class Repack:
    """A pack to rewrite: its kept blobs are copied to new packs, then it is deleted."""

    pack: int
    pack_id: bytes
    size: int
    kept_blobs: int
    live_bytes: int

    @property
    def write_bytes(self) -> int:
        """Bytes the copies need in new packs, headers included (an estimate from above)."""
        return self.live_bytes + HEADER_BYTES_PER_BLOB * self.kept_blobs + HEADER_FIXED_BYTES

    @property
    def freed_bytes(self) -> int:
        """Net bytes the repack gives back."""
        return self.size - self.live_bytes


@dataclass(frozen=True, eq=False)
class GcPlan:
    """What gc will do; `dedupe.gc.execute` carries it out in a crash-safe order. Packs are
    numbers."""

    keep: np.ndarray
    """Packs kept as they are (adopted unindexed packs included), by pack id."""
    delete: np.ndarray
    """Indexed packs without a kept copy: deleted whole."""
    orphans: np.ndarray
    """Packs no index names and no snapshot needs: deleted whole."""
    repack: tuple[Repack, ...]
    """Most bytes freed per byte written first."""
    adopted: np.ndarray
    """Unindexed packs that hold the only copy of a live blob (kept or repacked)."""
    young: np.ndarray
    """Unindexed young packs, left alone: in no other list (not deleted, repacked or named)."""
    named: np.ndarray
    """Per row: it is one of its pack's entries in the next index (a repeat in a pack is not)."""
    kept: np.ndarray
    """Per row: it is the copy kept of a live blob."""
    named_count: np.ndarray
    """Per pack: how many entries the next index names for it."""
    unused: np.ndarray
    """Per pack: bytes of its entries that are not kept copies."""
    live_blobs: int
    missing: int = 0
    """Live blob ids found in no pack (damage that gc cannot repair; `check` reports it)."""

    @property
    def unused_kept_bytes(self) -> int:
        """Unused bytes left in packs that are kept as they are."""
        return int(self.unused[self.keep].sum())


def index_bytes(packs: int, blobs: int) -> int:
    """An estimate from above of the size of index files naming `packs` and `blobs`."""
    return INDEX_BYTES_PER_PACK * packs + INDEX_BYTES_PER_BLOB * blobs + 256


def per_pack(
    pack: np.ndarray, mask: np.ndarray, packs: int, values: np.ndarray | None = None
) -> np.ndarray:
    """Per pack: how many rows `mask` selects, or the sum of their `values` (int64)."""
    total = np.zeros(packs, dtype=np.int64)
    for start in range(0, len(pack), _STEP):
        chosen = mask[start : start + _STEP]
        numbers = pack[start : start + _STEP][chosen]
        if values is None:
            total += np.bincount(numbers, minlength=packs)
        else:
            weights = values[start : start + _STEP][chosen]
            # float64 sums of fewer than 2**20 values below 2**32 are exact
            total += np.bincount(numbers, weights=weights, minlength=packs).astype(np.int64)
    return total


def _group_ids(entries: Entries) -> np.ndarray:
    sizes = np.diff(np.append(entries.group_starts, len(entries.group_rows)))
    return np.repeat(np.arange(len(sizes)), sizes)


def _named(entries: Entries) -> np.ndarray:
    """Rows that are their pack's entries: of rows with the same id and pack, the first."""
    named = np.ones(len(entries.pack), dtype=bool)
    rows = entries.group_rows
    if len(rows):
        group = _group_ids(entries)
        pack = entries.pack[rows]
        by_pack = np.lexsort((pack, group))  # stable: the first row of a pair stays first
        group, pack, rows = group[by_pack], pack[by_pack], rows[by_pack]
        repeat = (group[1:] == group[:-1]) & (pack[1:] == pack[:-1])
        named[rows[1:][repeat]] = False
    return named


def _pack_order(packs: Packs, *first: np.ndarray) -> np.ndarray:
    """Pack numbers sorted by the `first` keys (most significant last), then by pack id."""
    ids = np.frombuffer(b"".join(packs.pack_ids), dtype=np.uint8).reshape(-1, 32)
    words = ids.view(">u8")  # big-endian words sort like the bytes
    return np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0], *first))


def _kept(entries: Entries, packs: Packs, named: np.ndarray, young: np.ndarray) -> np.ndarray:
    """Per row: the copy kept of its live blob (see the module docstring for the choice)."""
    count = len(packs.sizes)
    live_named = entries.live & named
    live_bytes = per_pack(entries.pack, live_named, count, entries.length)
    rank = np.empty(count, dtype=np.int64)
    rank[_pack_order(packs, -live_bytes, young, ~packs.indexed)] = np.arange(count)
    kept: np.ndarray = live_named.copy()
    rows = entries.group_rows
    if len(rows):
        candidate = live_named[rows]
        group, rows = _group_ids(entries)[candidate], rows[candidate]
        best = np.lexsort((rank[entries.pack[rows]], group))
        group, rows = group[best], rows[best]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = group[1:] != group[:-1]
        kept[rows] = False
        kept[rows[first]] = True
    return kept


def with_young(
    packs: Packs, mtimes: Mapping[bytes, float | None], now: float | None, grace: float
) -> Packs:
    """`packs` with those no index names that are younger than `grace` seconds marked young.
    `mtimes` and `now` are by the storage's clock. A pack of unknown age counts as young:
    keeping a garbage pack one more day costs space, deleting a running backup's costs a backup."""
    young = np.zeros(len(packs.sizes), dtype=bool)
    for number in np.flatnonzero(~packs.indexed).tolist():
        mtime = mtimes.get(packs.pack_ids[number])
        young[number] = now is None or mtime is None or now - mtime < grace
    return dataclasses.replace(packs, young=young)


def make_plan(entries: Entries, packs: Packs, max_unused: float, missing: int = 0) -> GcPlan:
    """Decide the fate of every pack. `max_unused` is a fraction (0.10 = 10 %)."""
    if not 0.0 <= max_unused <= 1.0:
        raise ValueError("max_unused must be between 0 and 1")
    count = len(packs.sizes)
    young = np.zeros(count, dtype=bool) if packs.young is None else packs.young & ~packs.indexed
    if young.any():
        # A young pack may belong to a backup whose manifest is yet to come: all its blobs
        # count as live, so none of its copies is judged garbage.
        entries = dataclasses.replace(entries, live=entries.live | young[entries.pack])
    named = _named(entries)
    kept = _kept(entries, packs, named, young)
    kept_blobs = per_pack(entries.pack, kept, count)
    kept_bytes = per_pack(entries.pack, kept, count, entries.length)
    unused = per_pack(entries.pack, named, count, entries.length) - kept_bytes
    has = kept_blobs > 0
    share = unused / np.maximum(packs.sizes, 1)
    rewrite = has & (unused > 0) & (share > max_unused) & ~young
    by_id = _pack_order(packs)
    repack = [
        Repack(
            int(p), packs.pack_ids[p], int(packs.sizes[p]), int(kept_blobs[p]), int(kept_bytes[p])
        )
        for p in by_id[rewrite[by_id]]
    ]
    repack.sort(key=lambda r: (r.write_bytes / max(1, r.freed_bytes), r.pack_id))
    unused[~has | young] = 0
    return GcPlan(
        keep=by_id[(has & ~rewrite & ~young)[by_id]],
        delete=by_id[(~has & packs.indexed)[by_id]],
        orphans=by_id[(~has & ~packs.indexed & ~young)[by_id]],
        repack=tuple(repack),
        adopted=by_id[(has & ~packs.indexed & ~young)[by_id]],
        young=by_id[young[by_id]],
        named=named,
        kept=kept,
        named_count=per_pack(entries.pack, named, count),
        unused=unused,
        live_blobs=int(kept_blobs.sum()),
        missing=missing,
    )
