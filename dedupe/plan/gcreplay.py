"""gc replayed on the forecast's packs: what each night's forget and gc leave stored, by source.

The part of `dedupe.plan.projection.forecast` that decides, night by night, which bytes of the
existing packs and of the simulated nights' packs are still needed (through the kept snapshots,
the survival curve S and the standing curve R) and what gc leaves of them (`_collect`). Pure
arithmetic on the forecast's own state; the sizes go into `PARTS`, the sources docs/PLAN.md
compares with a replay.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dedupe.plan.projection import GroupEstimate

PARTS = (
    "other files (index, manifests)",
    "pack overhead",
    "garbage left by gc",
    "carried: newest night's data (S)",
    "carried: standing data (R)",
    "carried: older snapshots only",
    "new since the forecast",
)
"""The sources a forecast day's size is split into (`DayPoint.parts`)."""


@dataclass
class Night:
    """A simulated night's data: its own pack group."""

    estimate: int
    day: int
    added: float
    stored: float


@dataclass
class Pack:
    """An existing pack: its blob bytes as gc left them, and its groups with their carries."""

    stored: float
    overhead: int
    groups: list[tuple[int, int, list[tuple[int, int]]]]
    """(mask, bytes, [(estimate index, age in days of the data at that group's newest)])."""


def next_alive(alive_days: list[int], day: int, today: int) -> int:
    """Days from `day` to the first kept simulated snapshot at or after it; when none is kept,
    tomorrow's snapshot (which always comes) is the next one that can still reference it."""
    i = bisect.bisect_left(alive_days, day)
    return (alive_days[i] if i < len(alive_days) else today + 1) - day


def _collect(stored: float, live: float, overhead: int, max_unused: float) -> float:
    """What gc leaves of a group of packs holding `stored` blob bytes of which `live` are
    needed.

    gc rewrites a pack once its unused share exceeds `max_unused`, into new packs shared with
    the survivors of other packs, which then lose data in small steps again: across many packs
    the unused share is spread evenly between 0 and `max_unused`, so a group that is losing data
    holds `max_unused / 2` of its size unused on average (4.7 % measured at 10 %, docs/PLAN.md;
    the first version, which rewrote a group to exactly its needed bytes, forecast 40 % of it).
    A group that lost less than that keeps exactly what it lost; a group with nothing needed is
    deleted; `max_unused` 1 (100 %) never rewrites."""
    live = min(live, stored)
    if live <= 0:
        return 0.0
    if max_unused >= 1.0 or (stored - live) / (stored + overhead) <= max_unused / 2:
        return stored
    return live / (1.0 - max_unused / 2)


def gc_existing(
    packs: list[Pack],
    alive_bits: int,
    alive_days: list[list[int]],
    estimates: tuple[GroupEstimate, ...],
    today: int,
    max_unused: float,
    parts: dict[str, float],
) -> None:
    """gc on the existing packs; their stored bytes go to `parts` by source (`PARTS`)."""
    carry_gap = [next_alive(found, 0, today) for found in alive_days]
    newest_bits = 0
    for est in estimates:
        newest_bits |= 1 << est.newest_bit
    for pack in packs:
        if pack.stored <= 0:
            continue
        live = [0.0, 0.0, 0.0]  # newest night's data, standing data, older snapshots only
        for mask, size, carries in pack.groups:
            if not mask & newest_bits:
                kind = 2
            else:
                kind = 0 if any(age == 0 for _e, age in carries) else 1
            if mask & alive_bits:
                live[kind] += size
            elif carries:
                live[kind] += size * max(
                    _carry(estimates[e], age, carry_gap[e]) for e, age in carries
                )
        needed = sum(live)
        pack.stored = _collect(pack.stored, needed, pack.overhead, max_unused)
        if pack.stored > 0:
            parts[PARTS[1]] += pack.overhead
            parts[PARTS[2]] += pack.stored - min(needed, pack.stored)
            scale = min(1.0, pack.stored / needed)
            for kind, value in enumerate(live):
                parts[PARTS[3 + kind]] += value * scale


def _carry(estimate: GroupEstimate, age: int, gap: int) -> float:
    """The share of data the group's newest snapshot references, `age` days old there (first
    referenced `age` days before it), that the kept snapshot `gap` days on still references:
    the newest night's data along the nightly curve, older (standing) data along R."""
    return estimate.survive(gap) if age == 0 else estimate.stand(gap)


def gc_nights(
    nights: list[Night],
    alive_days: list[list[int]],
    estimates: tuple[GroupEstimate, ...],
    today: int,
    max_unused: float,
    parts: dict[str, float],
) -> float:
    """gc on the simulated nights' packs; their stored bytes go to `parts` (`PARTS`) and their
    total is returned."""
    total = 0.0
    for night in nights:
        if night.stored <= 0:
            continue
        gap = next_alive(alive_days[night.estimate], night.day, today)
        live = estimates[night.estimate].survive(gap) * night.added
        night.stored = _collect(night.stored, live, 0, max_unused)
        parts[PARTS[6]] += min(live, night.stored)
        parts[PARTS[2]] += night.stored - min(live, night.stored)
        total += night.stored
    return total
