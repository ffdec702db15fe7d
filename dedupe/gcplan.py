"""gc planning: a pure function from (packs, live blob ids, max_unused) to what gc will do.

No storage, no clock, no randomness: `dedupe.gc` gathers the facts, calls `make_plan`, and
executes the plan. Keeping the decision pure makes the rules testable on their own:

- Each live blob keeps exactly one copy. Copies in indexed packs are preferred over copies in
  packs no index names, then the pack holding the most live bytes, then the lowest pack id.
- An indexed pack holding no kept copy is garbage and is deleted whole (no writes needed).
- A pack no index names is a leftover of an interrupted write: deleted if it holds no kept copy,
  else adopted (a lost index file must not cost a live chunk) and named by the new index.
- A pack whose unused share (bytes of blobs that are dead or duplicated elsewhere, relative to
  the pack's size) exceeds `max_unused` is repacked; `max_unused=0` repacks any unused byte.
- Repacks are ordered by bytes freed per byte written (smallest live share first), so that a gc
  with little free space does the most rewarding work first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field

from dedupe.repo.pack import TRAILER, BlobEntry

# What a pack costs beyond its blobs: the sealed header (~46 bytes a blob plus the seal) and the
# trailer. Used to estimate the bytes a repack writes.
HEADER_BYTES_PER_BLOB = 48
HEADER_FIXED_BYTES = 64 + TRAILER.size
# What an index file costs a pack and a blob (msgpack of ids and ints, sealed).
INDEX_BYTES_PER_BLOB = 48
INDEX_BYTES_PER_PACK = 40


@dataclass(frozen=True)
class PackInfo:
    """One pack file as gc sees it."""

    pack_id: bytes
    size: int
    entries: tuple[BlobEntry, ...]
    indexed: bool


@dataclass(frozen=True)
class Repack:
    """A pack to rewrite: its kept blobs are copied to new packs, then it is deleted."""

    pack: PackInfo
    keep: tuple[BlobEntry, ...]

    @property
    def live_bytes(self) -> int:
        return sum(e.length for e in self.keep)

    @property
    def write_bytes(self) -> int:
        """Bytes the copies need in new packs, headers included (an estimate from above)."""
        return self.live_bytes + HEADER_BYTES_PER_BLOB * len(self.keep) + HEADER_FIXED_BYTES

    @property
    def freed_bytes(self) -> int:
        """Net bytes the repack gives back."""
        return self.pack.size - self.live_bytes


@dataclass(frozen=True)
class GcPlan:
    """What gc will do; `dedupe.gc` executes it in a crash-safe order."""

    keep: tuple[PackInfo, ...]
    """Packs kept as they are (adopted unindexed packs included)."""
    delete: tuple[PackInfo, ...]
    """Indexed packs without a kept copy: deleted whole."""
    orphans: tuple[PackInfo, ...]
    """Packs no index names and no snapshot needs: deleted whole."""
    repack: tuple[Repack, ...]
    """Most bytes freed per byte written first."""
    live_blobs: int
    missing: frozenset[bytes] = field(default_factory=frozenset)
    """Live blob ids found in no pack (damage that gc cannot repair; `check` reports it)."""
    unused_bytes: Mapping[bytes, int] = field(default_factory=dict)
    """Unused blob bytes per kept or repacked pack."""

    @property
    def adopted(self) -> tuple[PackInfo, ...]:
        """Unindexed packs that hold the only copy of a live blob."""
        kept = (*self.keep, *(r.pack for r in self.repack))
        return tuple(p for p in kept if not p.indexed)

    @property
    def unused_kept_bytes(self) -> int:
        """Unused bytes left in packs that are kept as they are."""
        return sum(self.unused_bytes.get(p.pack_id, 0) for p in self.keep)


def index_bytes(packs: int, blobs: int) -> int:
    """An estimate from above of the size of an index file naming `packs` and `blobs`."""
    return INDEX_BYTES_PER_PACK * packs + INDEX_BYTES_PER_BLOB * blobs + 256


def choose_copies(packs: Iterable[PackInfo], live: Set[bytes]) -> dict[bytes, bytes]:
    """blob id -> the pack id holding the copy to keep, for every live blob found in a pack."""
    packs = list(packs)
    live_bytes: dict[bytes, int] = {}
    for pack in packs:
        live_bytes[pack.pack_id] = sum(e.length for e in pack.entries if e.blob_id in live)
    best: dict[bytes, tuple[tuple[bool, int, bytes], bytes]] = {}
    for pack in packs:
        # Larger key wins; the pack id is negated by comparing its complement so that the lowest
        # id wins ties deterministically.
        rank = (pack.indexed, live_bytes[pack.pack_id], bytes(255 - b for b in pack.pack_id))
        for entry in pack.entries:
            if entry.blob_id not in live:
                continue
            current = best.get(entry.blob_id)
            if current is None or rank > current[0]:
                best[entry.blob_id] = (rank, pack.pack_id)
    return {blob_id: pack_id for blob_id, (_rank, pack_id) in best.items()}


def make_plan(packs: Iterable[PackInfo], live: Set[bytes], max_unused: float) -> GcPlan:
    """Decide the fate of every pack. `max_unused` is a fraction (0.10 = 10 %)."""
    if not 0.0 <= max_unused <= 1.0:
        raise ValueError("max_unused must be between 0 and 1")
    packs = sorted(packs, key=lambda p: p.pack_id)
    owner = choose_copies(packs, live)
    keep: list[PackInfo] = []
    delete: list[PackInfo] = []
    orphans: list[PackInfo] = []
    repack: list[Repack] = []
    unused: dict[bytes, int] = {}
    for pack in packs:
        kept = tuple(e for e in pack.entries if owner.get(e.blob_id) == pack.pack_id)
        # A blob listed twice in one pack keeps one entry.
        seen: set[bytes] = set()
        kept = tuple(e for e in kept if not (e.blob_id in seen or seen.add(e.blob_id)))
        if not kept:
            (delete if pack.indexed else orphans).append(pack)
            continue
        unused_bytes = sum(e.length for e in pack.entries) - sum(e.length for e in kept)
        unused[pack.pack_id] = unused_bytes
        share = unused_bytes / pack.size if pack.size else 0.0
        if unused_bytes > 0 and share > max_unused:
            repack.append(Repack(pack, kept))
        else:
            keep.append(pack)
    repack.sort(key=lambda r: (r.write_bytes / max(1, r.freed_bytes), r.pack.pack_id))
    missing = frozenset(live - owner.keys())
    return GcPlan(
        keep=tuple(keep),
        delete=tuple(delete),
        orphans=tuple(orphans),
        repack=tuple(repack),
        live_blobs=len(owner),
        missing=missing,
        unused_bytes=unused,
    )
