"""Repository statistics from the index and the trees: sizes, ratios, per-snapshot usage.

No data blob is ever read: every distinct tree is read and decoded once (trees are small and
shared folders are shared trees), and sizes come from the index (`Location.length` is the
stored, sealed size; `raw_length` the plaintext size).

Which snapshots reference a blob is kept as a bitmask (bit i = the i-th snapshot, oldest
first). Masks are propagated down the tree DAG once, in topological order, so the cost is one
pass over the distinct trees whatever the number of snapshots, instead of one walk per snapshot.
Stored bytes are then grouped by (pack, mask); from those groups follow:

- a snapshot's unique bytes: blobs whose mask is that snapshot's bit alone, i.e. exactly what
  forgetting it alone and a full gc (`--max-unused 0`) would free;
- a snapshot's added bytes: recorded in the manifest (`summary.bytes_added`, what the backend
  grew by when it was made, packs and index) when present; otherwise (older manifests) the
  stored bytes of blobs no older snapshot still in the repository references, which counts data
  first stored by an already forgotten snapshot against the next one that kept it;
- what gc can free now: blobs in the index that no snapshot references (mask 0).

`unusual_nights` flags a night that added far more than its group's nights usually do (a
ransomware re-encryption, a scanner dumping its archive): above the median plus 5 robust
standard deviations (1.4826 MAD) of the group's nights, the bound `plan` caps such a night at
(`dedupe.plan.estimate`), and at least twice the median (identical nights have no spread).

The (pack, mask) groups are also what `dedupe.plan.projection` replays a retention policy on.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from dedupe.errors import FormatError
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, FILE
from dedupe.repo import manifests, reserve
from dedupe.repo.repository import Repository, pack_id_from_name
from dedupe.repo.treewalk import TREE, load_tree, traverse

TreeProgress = Callable[[int], None]
"""on_tree(trees loaded so far)."""


@dataclass(frozen=True)
class SnapshotUsage:
    """One snapshot's share of the repository."""

    snapshot: Snapshot
    logical_bytes: int
    """Bytes of the files it holds (`summary.bytes_total`)."""
    unique_bytes: int
    """Stored bytes only this snapshot references: what forgetting it alone would free."""
    added_bytes: int
    """Stored bytes it added when it was made (see the module docstring for the source)."""
    added_source: str
    """"manifest" (recorded at snapshot time) or "index" (derived, see the module docstring)."""


@dataclass(frozen=True)
class RepoStats:
    """What `dedupe stats` reports; `pack_masks` is the raw material of `dedupe plan`."""

    stored_bytes: int
    """Every repository object, as the backend lists it (locks and the space reserve excluded)."""
    reserve_bytes: int
    pack_bytes: int
    """Stored bytes of the pack files (the rest is index files, manifests, keys, config)."""
    chunks: int
    """Blobs in the index (file chunks and trees)."""
    indexed_stored_bytes: int
    indexed_raw_bytes: int
    referenced_raw_bytes: int
    """Plaintext bytes of the distinct blobs the snapshots reference (after deduplication)."""
    unreferenced_bytes: int
    """Stored bytes of indexed blobs no snapshot references (gc frees them)."""
    usage: list[SnapshotUsage]
    pack_sizes: dict[bytes, int] = field(repr=False)
    pack_masks: dict[bytes, dict[int, int]] = field(repr=False)
    """pack id -> {snapshot bitmask -> stored bytes of the pack's blobs with that mask}."""

    @property
    def logical_bytes(self) -> int:
        return sum(u.logical_bytes for u in self.usage)

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes per distinct plaintext byte (before compression)."""
        return self.logical_bytes / self.referenced_raw_bytes if self.referenced_raw_bytes else 0.0

    @property
    def compression_ratio(self) -> float:
        """Plaintext bytes per stored byte, over the blobs in the index."""
        return (
            self.indexed_raw_bytes / self.indexed_stored_bytes if self.indexed_stored_bytes else 0.0
        )

    @property
    def total_ratio(self) -> float:
        """Logical bytes per stored byte: what deduplication and compression save together."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 0.0


def collect(
    repo: Repository, damaged: list[str] | None = None, on_tree: TreeProgress | None = None
) -> RepoStats:
    """Gather the statistics. Damaged manifests go to `damaged` (or raise); a damaged or
    missing tree raises DamageError, since per-snapshot numbers would silently be wrong."""
    snaps = manifests.load_all(repo, damaged)
    stored, reserve_bytes, pack_sizes = _listing(repo)
    blob_masks = reference_masks(repo, snaps, on_tree)
    pack_masks: dict[bytes, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    chunks = indexed_stored = indexed_raw = referenced_raw = 0
    first_ref = [0] * len(snaps)
    for blob_id, loc in repo.index.items():
        mask = blob_masks.get(blob_id, 0)
        chunks += 1
        indexed_stored += loc.length
        indexed_raw += loc.raw_length
        pack_masks[loc.pack_id][mask] += loc.length
        if mask:
            referenced_raw += loc.raw_length
            first_ref[(mask & -mask).bit_length() - 1] += loc.length
    by_mask: dict[int, int] = defaultdict(int)
    for masks in pack_masks.values():
        for mask, size in masks.items():
            by_mask[mask] += size
    usage = []
    for i, snap in enumerate(snaps):
        recorded = snap.summary.get("bytes_added")
        usage.append(
            SnapshotUsage(
                snapshot=snap,
                logical_bytes=int(snap.summary.get("bytes_total", 0)),
                unique_bytes=by_mask.get(1 << i, 0),
                added_bytes=int(recorded) if recorded is not None else first_ref[i],
                added_source="manifest" if recorded is not None else "index",
            )
        )
    return RepoStats(
        stored_bytes=stored,
        reserve_bytes=reserve_bytes,
        pack_bytes=sum(pack_sizes.values()),
        chunks=chunks,
        indexed_stored_bytes=indexed_stored,
        indexed_raw_bytes=indexed_raw,
        referenced_raw_bytes=referenced_raw,
        unreferenced_bytes=by_mask.get(0, 0),
        usage=usage,
        pack_sizes=pack_sizes,
        pack_masks={pid: dict(m) for pid, m in pack_masks.items()},
    )


def _listing(repo: Repository) -> tuple[int, int, dict[bytes, int]]:
    """(stored bytes, reserve bytes, pack sizes) from one listing of the backend.

    Locks come and go and the reserve is a fixed 1 MiB that holds no data, so both are left out,
    as gc leaves them out of its `stored_bytes_*`: stats and gc report the same number."""
    stored = reserve_bytes = 0
    pack_sizes: dict[bytes, int] = {}
    for info in repo.storage.list(""):
        if info.name.startswith("locks/"):
            continue
        if info.name == reserve.RESERVE_NAME:
            reserve_bytes = info.size
            continue
        stored += info.size
        pack_id = pack_id_from_name(info.name)
        if pack_id is not None:
            pack_sizes[pack_id] = info.size
    return stored, reserve_bytes, pack_sizes


def reference_masks(
    repo: Repository, snaps: list[Snapshot], on_tree: TreeProgress | None = None
) -> dict[bytes, int]:
    """blob id (trees and data) -> bitmask of the snapshots (by position) that reference it.

    Each distinct tree is loaded once (`treewalk.traverse` with a visited set, so trees nested
    past its MAX_DEPTH are refused as everywhere); masks flow from the roots down in topological
    order (Kahn), so a folder shared by every snapshot costs one visit, not one per snapshot.
    """
    children: dict[bytes, tuple[bytes, ...]] = {}
    contents: dict[bytes, tuple[bytes, ...]] = {}
    seen: set[bytes] = set()

    def first_visit(tree_id: bytes) -> bool:
        if tree_id in seen:
            return False
        seen.add(tree_id)
        return True

    roots = dict.fromkeys(s.tree for s in snaps)
    for visit in traverse(partial(load_tree, repo), roots, first_visit=first_visit, entries=False):
        if visit.kind != TREE:
            continue
        subtrees: list[bytes] = []
        data: list[bytes] = []
        for node in visit.nodes:
            if node.type == FILE:
                data.extend(node.content)
            elif node.type == DIR and node.subtree is not None:
                subtrees.append(node.subtree)
        children[visit.tree_id] = tuple(dict.fromkeys(subtrees))
        contents[visit.tree_id] = tuple(dict.fromkeys(data))
        if on_tree is not None:
            on_tree(len(children))
    indegree: dict[bytes, int] = dict.fromkeys(children, 0)
    for subs in children.values():
        for sub in subs:
            indegree[sub] += 1
    masks: dict[bytes, int] = defaultdict(int)
    for i, snap in enumerate(snaps):
        masks[snap.tree] |= 1 << i
    ready = [t for t, n in indegree.items() if n == 0]
    done = 0
    while ready:
        tree_id = ready.pop()
        done += 1
        mask = masks[tree_id]
        for blob_id in contents[tree_id]:
            masks[blob_id] |= mask
        for sub in children[tree_id]:
            masks[sub] |= mask
            indegree[sub] -= 1
            if indegree[sub] == 0:
                ready.append(sub)
    if done != len(children):
        # Content-addressed trees cannot form a cycle honestly; only a hostile repository can.
        raise FormatError("snapshot trees refer to each other in a cycle (hostile or damaged)")
    return masks


UNUSUAL_SPREADS = 5.0
"""A night is unusual above median + this many robust standard deviations (as `plan` caps)."""
UNUSUAL_MIN_NIGHTS = 3
"""Fewer nights than this in a group (its first backup excluded) say nothing about usual."""


@dataclass(frozen=True)
class Unusual:
    """Per snapshot (in `usage` order): whether it added unusually much, and its group's bound
    (None for a group's first backup or a group with too few nights to judge)."""

    flags: tuple[bool, ...]
    bounds: tuple[float | None, ...]


def unusual_bound(added: Sequence[int]) -> float | None:
    """The bound above which a night is unusual, from a group's nights (first backup excluded):
    max(median + 5 * 1.4826 * MAD, 2 * median); None with fewer than `UNUSUAL_MIN_NIGHTS`."""
    if len(added) < UNUSUAL_MIN_NIGHTS:
        return None
    middle = statistics.median(added)
    spread = 1.4826 * statistics.median(abs(a - middle) for a in added)
    return max(middle + UNUSUAL_SPREADS * spread, 2.0 * middle)


def unusual_nights(usage: Sequence[SnapshotUsage]) -> Unusual:
    """Which snapshots added unusually much for their group (host and paths, as forget groups):
    each group's first snapshot is its full first backup, never unusual nor counted."""
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(list)
    for i, u in enumerate(usage):
        groups[(u.snapshot.host, tuple(u.snapshot.display_paths()))].append(i)
    flags = [False] * len(usage)
    bounds: list[float | None] = [None] * len(usage)
    for members in groups.values():
        nights = members[1:]
        bound = unusual_bound([usage[i].added_bytes for i in nights])
        for i in nights:
            bounds[i] = bound
            flags[i] = bound is not None and usage[i].added_bytes > bound
    return Unusual(tuple(flags), tuple(bounds))
