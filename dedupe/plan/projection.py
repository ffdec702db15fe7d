"""Forecast the repository size under a retention policy: the pure core of `dedupe plan`.

No I/O and no clock: the history (from `dedupe.stats`), the policy, the time zone and the number
of days are arguments, so a forecast is reproducible and testable on any calendar. The policy is
applied with `dedupe.retention.apply_policy`, the very function `forget` uses, so the forecast
prunes exactly the snapshots a nightly `forget` would.

The model, stated so that its errors can be judged:

1. **Nightly added bytes.** Each future night every group (host and paths, as `forget` groups)
   gets one snapshot at the time of day of its newest one. It adds the mean of what the
   group's last 30 snapshots added (its oldest, the base, excluded), plus their trend when it
   rises significantly (`estimate_nightly`). `growth_per_month` compounds on top:
   night d adds `(level + trend * d) * (1 + growth) ** (d / 30.44)`.
2. **How long added data stays referenced.** Measured, not assumed: S(k), the share of one
   night's added bytes that the group's snapshot k days later still references, from the
   reference bitmasks (`measure_survival`, `survival_curve`); beyond the longest measured gap
   K a power law fitted on the measured days (`fit_tail_exponent`); S = 1 without any
   measurement, the safe side. A night's data is stored while a kept snapshot within its
   lifetime exists: with the next kept snapshot d days after the night, a share S(d) of it is
   still needed. Keep-everything thus grows linearly; a policy that forgets nights frees their
   short-lived data (a rewritten dump) and keeps their long-lived data (new scans).
3. **Existing data** is replayed exactly: stored bytes are grouped by (pack, set of referencing
   snapshots), and a group is needed while one of its snapshots is kept. Data the newest
   snapshot of a group references outlives the existing snapshots, and is carried on in two
   parts measured apart: what the newest night added follows the nightly curve S; what the
   newest snapshot shares with older ones (the base folder, slow-changing files: the standing
   data) follows R(k), the measured share of a snapshot's standing data that the snapshot k days
   later still references (`measure_standing`; the power-law tail beyond; R = 1 unmeasured).
   The nightly curve says nothing about the base: with nights that are gone the next day it is
   0 at one day, and the first version, carrying the base on it, dropped the whole base once its
   snapshots were forgotten (issue 15).
4. **gc** runs after every nightly forget, as `dedupe gc --max-unused` does: a pack with no
   needed data is deleted; a pack whose unneeded share exceeds `max_unused` is rewritten to its
   needed bytes; otherwise it stays as it is. Each future night's data is its own pack group
   (a snapshot writes its own packs). A group that is losing data holds half of `max_unused`
   unused on average (`gcreplay._collect`). Pack headers, index files and manifests grow with the
   stored data at today's ratios.

The size reported for a day is after that night's snapshot, forget and gc; the temporary extra
space a gc repack needs is not included (it is at most one batch of packs). What the history
cannot show, it cannot forecast: a pace of growth that has not started yet. docs/PLAN.md has
the validation against replayed nights and its error.

The peak is the largest of the forecast days 1..N (today's size, before the first forget, is
not a forecast). `forecast_band` replays the same nights with each group's nightly level at the
ends of its 90 % interval: the uncertainty of the measured average, not of future growth.
What the history cannot show is covered by a margin measured on replayed histories
(`dedupe.plan.margin`): the drive to buy holds every forecast day times the largest
under-estimate measured that many nights ahead (`Forecast.needed`), and `margin.widen` spreads
the band to the replays' errors.
`past_sizes` gives the history's side of the chart; `dedupe.plan.drive` turns a forecast into
the day a drive fills and the sentence that says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo

from dedupe.plan import margin as plan_margin
from dedupe.plan.estimate import (
    History,
    PackUsage,  # noqa: F401  (re-exported: callers build a History from here)
    estimate_nightly,
    fit_tail_exponent,
    local_day,
    measure_standing,
    measure_survival,
    survival_curve,
)
from dedupe.plan.gcreplay import PARTS, Night, Pack, gc_existing, gc_nights
from dedupe.retention import GroupKey, Policy, SnapshotInfo, apply_policy, local_time

ESTIMATE_NIGHTS = 30
"""How many recent snapshots of a group the estimates use."""
DAYS_PER_MONTH = 365.25 / 12
_GB = 1000**3
# Drive sizes as sold (decimal units): USB sticks, SSDs, external disks.
DRIVE_SIZES = tuple(
    n * _GB
    for n in (
        *(1, 2, 4, 8, 16, 32, 64, 128, 256, 500),
        *(1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 14000),
        *(16000, 18000, 20000, 22000, 24000),
    )
)


@dataclass(frozen=True)
class GroupEstimate:
    """What one group of snapshots is expected to do each future night."""

    group: GroupKey
    newest: datetime
    newest_bit: int
    nightly_bytes: float
    """The expected added bytes of a night at the newest snapshot (the trend applied)."""
    nights_used: int
    """How many snapshots the estimate was taken over (0: no estimate, nothing added)."""
    nights_capped: int
    """Of those, nights counted at the outlier bound instead of their own size."""
    nightly_trend: float
    """Bytes the nightly addition rises by each day (0: no rising trend measured)."""
    survival: tuple[float, ...]
    """survival[k]: measured share of a night's added bytes still referenced k days later."""
    survival_measured: bool
    tail_exponent: float = 0.0
    """Beyond the measured days, S(k) = S(K) * ((1 + K) / (1 + k)) ** tail_exponent."""
    standing: tuple[float, ...] = (1.0,)
    """standing[k]: measured share of the data a snapshot shares with older ones (the base,
    unchanged files) that the snapshot k days later still references; R in the model."""
    standing_measured: bool = False
    standing_exponent: float = 0.0
    """Beyond the measured days, R(k) = R(K) * ((1 + K) / (1 + k)) ** standing_exponent."""
    nightly_error: float = 0.0
    """Standard error of `nightly_bytes` (the uncertainty band uses 1.645 of it)."""

    def survive(self, days: int) -> float:
        """S(days): measured up to the longest measured gap K, the fitted tail beyond."""
        return _along(self.survival, self.tail_exponent, days)

    def stand(self, days: int) -> float:
        """R(days): the share of today's standing data still referenced `days` days on."""
        return _along(self.standing, self.standing_exponent, days)

    def survive_given(self, age: int, days: int) -> float:
        """S(age + days) / S(age): the chance that data already `age` days old lasts `days` more."""
        alive = self.survive(age)
        return self.survive(age + days) / alive if alive > 0 else 0.0

    def added_on(self, day: int) -> float:
        """The expected added bytes of night `day` (1 = the night after the newest snapshot)."""
        return self.nightly_bytes + self.nightly_trend * day


def _along(curve: tuple[float, ...], exponent: float, days: int) -> float:
    last = len(curve) - 1
    if days <= last:
        return curve[max(days, 0)]
    tail: float = ((1 + last) / (1 + days)) ** exponent
    return curve[last] * tail


@dataclass(frozen=True)
class DayPoint:
    day: date
    stored_bytes: int
    snapshots: int
    parts: tuple[tuple[str, int], ...] = ()
    """The forecast size by source (`PARTS`): what docs/PLAN.md compares with a replay."""


@dataclass(frozen=True)
class Forecast:
    series: tuple[DayPoint, ...]
    """Day 0 is today's size; day d is after night d's snapshot, forget and gc."""
    estimates: tuple[GroupEstimate, ...]
    margin: float | None
    """The factor on the forecast for the drive to buy; None: the one measured on replays for
    each night ahead (`dedupe.plan.margin.high`)."""
    pruned: bool
    """False when the policy has no keep rule: forget would refuse it, so nothing is pruned."""

    @property
    def peak(self) -> DayPoint:
        """The largest forecast day (days 1..N, the first such day): what the drive must hold.
        Today's size is not a forecast: before the first night's forget and gc it can be larger
        than any later day (a history that was never pruned) and would hide the real peak."""
        return max(self.series[1:], key=lambda p: (p.stored_bytes, -p.day.toordinal()))

    @property
    def final(self) -> DayPoint:
        return self.series[-1]

    def margin_on(self, ahead: int) -> float:
        """The factor on the forecast `ahead` nights on: the given margin or the measured one."""
        return self.margin if self.margin is not None else plan_margin.high(ahead)

    @property
    def needed(self) -> tuple[DayPoint, float]:
        """The forecast day whose size times its margin is largest, and that factor: what the
        drive must hold (with the measured margin, a later day can need more than the peak)."""
        ahead, point = max(
            enumerate(self.series[1:], start=1),
            key=lambda p: (p[1].stored_bytes * self.margin_on(p[0]), -p[0]),
        )
        return point, self.margin_on(ahead)

    @property
    def needed_bytes(self) -> int:
        point, factor = self.needed
        return math.ceil(point.stored_bytes * factor)

    @property
    def drive_bytes(self) -> int:
        return drive_size(self.needed_bytes)


BAND_Z = 1.645
"""The uncertainty band: the nightly level moved by 1.645 standard errors (90 %, two-sided)."""


def forecast_band(
    history: History,
    policy: Policy,
    days: int,
    *,
    tz: tzinfo | None = None,
    growth_per_month: float = 0.0,
    max_unused: float = 0.10,
    estimates: tuple[GroupEstimate, ...] | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Low and high sizes for every day of `forecast`: the same replay with each group's nightly
    level at the ends of its 90 % interval (`BAND_Z` standard errors of the mean of the nights
    it was taken over). This is the uncertainty of the measured nightly average only; growth
    the history does not show yet is outside it (docs/PLAN.md)."""
    estimates = estimate_groups(history, tz) if estimates is None else estimates
    ends = []
    for sign in (-1, 1):
        moved = tuple(
            replace(e, nightly_bytes=max(0.0, e.nightly_bytes + sign * BAND_Z * e.nightly_error))
            for e in estimates
        )
        run = forecast(
            history,
            policy,
            days,
            tz=tz,
            growth_per_month=growth_per_month,
            max_unused=max_unused,
            estimates=moved,
        )
        ends.append(tuple(p.stored_bytes for p in run.series))
    return ends[0], ends[1]


def past_sizes(history: History, tz: tzinfo | None = None) -> tuple[tuple[date, int], ...]:
    """The repository's size night by night as today's packs tell it: on each snapshot's day,
    every pack one of the snapshots up to that night references (a pack counts from the night of
    its oldest referencing snapshot), plus today's index and other files. The last point is
    today's size. It leaves out data that forgotten snapshots held and gc has since freed, so
    it is what the kept history needed, a lower bound of what was stored then."""
    first_night: list[int] = []
    unreferenced = 0
    for pack in history.packs:
        masks = [mask for mask, _size in pack.groups if mask]
        if not masks:
            unreferenced += pack.size
            continue
        first_night.append(min((m & -m).bit_length() - 1 for m in masks))
    sizes_by_night: dict[int, int] = defaultdict(int)
    referenced = [p for p in history.packs if any(mask for mask, _size in p.groups)]
    for pack, night in zip(referenced, first_night, strict=True):
        sizes_by_night[night] += pack.size
    out: dict[date, int] = {}
    total = history.other_bytes + unreferenced
    for i, info in enumerate(history.snapshots):
        total += sizes_by_night.get(i, 0)
        out[local_time(info.time, tz).date()] = total
    return tuple(sorted(out.items()))


def drive_size(needed: float) -> int:
    """The smallest common drive size holding `needed` bytes (beyond 24 TB: whole TB)."""
    for size in DRIVE_SIZES:
        if size >= needed:
            return size
    return math.ceil(needed / (1000 * _GB)) * 1000 * _GB


# --- estimates ---------------------------------------------------------------------------------


def estimate_groups(history: History, tz: tzinfo | None = None) -> tuple[GroupEstimate, ...]:
    """The nightly added bytes and the survival curve of every group (model points 1 and 2)."""
    members: dict[GroupKey, list[int]] = defaultdict(list)
    for i, info in enumerate(history.snapshots):
        members[info.group_key].append(i)
    by_mask: dict[int, int] = defaultdict(int)
    for pack in history.packs:
        for mask, size in pack.groups:
            by_mask[mask] += size
    estimates = []
    for group, indices in sorted(members.items()):
        recent = indices[1:][-ESTIMATE_NIGHTS:]
        newest_day = local_day(history.snapshots[indices[-1]].time, tz)
        nightly = estimate_nightly(
            [local_day(history.snapshots[i].time, tz) - newest_day for i in recent],
            [history.added_bytes[i] for i in recent],
        )
        points = measure_survival(history, indices, recent, by_mask, tz)
        standing = measure_standing(history, indices, recent, by_mask, tz)
        estimates.append(
            GroupEstimate(
                group=group,
                newest=history.snapshots[indices[-1]].time,
                newest_bit=indices[-1],
                nightly_bytes=nightly.level,
                nights_used=len(recent),
                nights_capped=nightly.capped,
                nightly_trend=nightly.trend,
                survival=survival_curve(points) if points else (1.0,),
                survival_measured=bool(points),
                tail_exponent=fit_tail_exponent(points),
                standing=survival_curve(standing) if standing else (1.0,),
                standing_measured=bool(standing),
                standing_exponent=fit_tail_exponent(standing),
                nightly_error=nightly.error,
            )
        )
    return tuple(estimates)


def forecast(
    history: History,
    policy: Policy,
    days: int,
    *,
    tz: tzinfo | None = None,
    growth_per_month: float = 0.0,
    max_unused: float = 0.10,
    margin: float | None = None,
    estimates: tuple[GroupEstimate, ...] | None = None,
) -> Forecast:
    """Replay `days` nights from the newest snapshot on (model in the module docstring).

    `growth_per_month` and `max_unused` are fractions (0.05 = 5 %). A policy without a keep rule
    is never applied (forget would refuse it), so that forecast keeps everything.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if not history.snapshots:
        raise ValueError("a forecast needs at least one snapshot")
    estimates = estimate_groups(history, tz) if estimates is None else estimates
    prune = policy.has_keep_rule()
    packs = _existing_packs(history, estimates, tz)
    today_blobs = sum(pack.stored for pack in packs)
    overhead_ratio = sum(pack.overhead for pack in packs) / max(1.0, today_blobs)
    nights: list[Night] = []
    night_ids: dict[str, int] = {}
    bit_of = {info.id: i for i, info in enumerate(history.snapshots)}
    alive: list[SnapshotInfo] = list(history.snapshots)
    start = local_time(max(info.time for info in history.snapshots), tz).date()
    series = [DayPoint(start, history.stored_bytes, len(alive))]
    for day in range(1, days + 1):
        factor = (1.0 + growth_per_month) ** (day / DAYS_PER_MONTH)
        for e, est in enumerate(estimates):
            info = SnapshotInfo(
                id=f"plan-{day}-{e}",
                time=_night_time(est.newest, day, tz),
                host=est.group[0],
                paths=est.group[1],
                tags=frozenset(),
                held=False,
                hold_reason=None,
            )
            night_ids[info.id] = len(nights)
            added = est.added_on(day) * factor
            nights.append(Night(e, day, added, added))
            alive.append(info)
        if prune:
            kept = {d.snapshot.id for d in apply_policy(alive, policy, tz) if d.keep}
            alive = [info for info in alive if info.id in kept]
        alive_bits = 0
        alive_days: list[list[int]] = [[] for _ in estimates]
        for info in alive:
            if info.id in bit_of:
                alive_bits |= 1 << bit_of[info.id]
            else:
                night = nights[night_ids[info.id]]
                alive_days[night.estimate].append(night.day)
        for found in alive_days:
            found.sort()
        parts = dict.fromkeys(PARTS, 0.0)
        gc_existing(packs, alive_bits, alive_days, estimates, day, max_unused, parts)
        new_stored = gc_nights(nights, alive_days, estimates, day, max_unused, parts)
        # Pack headers and index entries come with every blob, manifests with every backup:
        # both grow with the stored data, at today's ratios (held constant, the first version
        # forecast half of what they came to on the replays).
        in_packs = sum(parts[name] for name in PARTS[2:])
        parts[PARTS[1]] += new_stored * overhead_ratio
        parts[PARTS[0]] = history.other_bytes * max(1.0, in_packs / max(1.0, today_blobs))
        series.append(
            DayPoint(
                start + timedelta(days=day),
                round(sum(parts.values())),
                len(alive),
                tuple((name, round(value)) for name, value in parts.items()),
            )
        )
    return Forecast(tuple(series), estimates, margin, prune)


def _night_time(newest: datetime, day: int, tz: tzinfo | None) -> datetime:
    """The same local wall-clock time `day` days after `newest` (DST-proof: a night never
    slides across midnight into another calendar day)."""
    wall = local_time(newest, tz).replace(tzinfo=None) + timedelta(days=day)
    return wall.astimezone() if tz is None else wall.replace(tzinfo=tz)


def _existing_packs(
    history: History, estimates: tuple[GroupEstimate, ...], tz: tzinfo | None
) -> list[Pack]:
    """Existing packs with, per mask, which groups' future snapshots carry the data on."""
    day_of = [local_day(info.time, tz) for info in history.snapshots]
    group_bits: dict[GroupKey, int] = defaultdict(int)
    for i, info in enumerate(history.snapshots):
        group_bits[info.group_key] |= 1 << i
    packs = []
    for pack in history.packs:
        groups = []
        for mask, size in pack.groups:
            carries = []
            for e, est in enumerate(estimates):
                if mask >> est.newest_bit & 1:
                    own = mask & group_bits[est.group]
                    first = (own & -own).bit_length() - 1
                    carries.append((e, day_of[est.newest_bit] - day_of[first]))
            groups.append((mask, size, carries))
        blob_bytes = sum(size for _mask, size in pack.groups)
        packs.append(Pack(float(blob_bytes), max(0, pack.size - blob_bytes), groups))
    return packs
