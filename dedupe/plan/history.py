"""The forecast's view of a repository: `dedupe.stats` numbers turned into a `History`.

Snapshots become `SnapshotInfo` exactly as `forget` sees them (`retention.snapshot_info`), so
the forecast prunes what `forget` would prune; packs become their stored bytes per snapshot mask.
Snapshots whose time lies outside the calendar a forecast can replay are left out, and the bytes
only they reference are held constant.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dedupe.model.snapshot import Snapshot
from dedupe.plan.estimate import History, PackUsage
from dedupe.retention import snapshot_info, utc_instant
from dedupe.stats import RepoStats

PLAN_FIRST = datetime(1900, 1, 1, tzinfo=UTC)
PLAN_LAST = datetime(9000, 1, 1, tzinfo=UTC)


def plannable(snapshot: Snapshot) -> bool:
    """Whether the forecast can use the snapshot: its time lies in [PLAN_FIRST, PLAN_LAST).

    Older versions accepted any `snapshot --time`, so a repository may hold a snapshot of year 1
    or 9999: a night after it does not exist in the calendar, and gaps of millions of days
    would make the survival curves that long. Such snapshots are left out of the forecast."""
    return PLAN_FIRST <= utc_instant(snapshot.time) < PLAN_LAST


def history_from_stats(result: RepoStats) -> tuple[History, list[Snapshot]]:
    """The forecast's view of the repository: snapshots as `forget` sees them, packs by mask;
    and the snapshots left out (`plannable`). Bytes only those reference are held constant."""
    kept = [i for i, u in enumerate(result.usage) if plannable(u.snapshot)]
    left_out = [u.snapshot for u in result.usage if not plannable(u.snapshot)]
    new_bit = {old: new for new, old in enumerate(kept)}

    def remap(mask: int) -> int:
        if not left_out:
            return mask
        return sum(1 << new for old, new in new_bit.items() if mask >> old & 1)

    constant = 0
    packs = []
    for pack_id, masks in result.pack_masks.items():
        size = result.pack_sizes.get(pack_id, sum(masks.values()))
        groups: dict[int, int] = {}
        for mask, stored in masks.items():
            new_mask = remap(mask)
            if mask and not new_mask:  # referenced only by left-out snapshots
                constant += stored
                size -= stored
                continue
            groups[new_mask] = groups.get(new_mask, 0) + stored
        packs.append(PackUsage(size, tuple(sorted(groups.items()))))
    # Packs no index names hold nothing a snapshot can reach through the index: garbage.
    packs.extend(
        PackUsage(size, ())
        for pack_id, size in result.pack_sizes.items()
        if pack_id not in result.pack_masks
    )
    history = History(
        snapshots=tuple(snapshot_info(result.usage[i].snapshot) for i in kept),
        added_bytes=tuple(result.usage[i].added_bytes for i in kept),
        packs=tuple(packs),
        other_bytes=max(0, result.stored_bytes - result.pack_bytes) + constant,
    )
    return history, left_out
