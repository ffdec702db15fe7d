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
   snapshot of a group references is carried on with the conditional survival
   S(age + k) / S(age), so old data thins out slowly along the tail.
4. **gc** runs after every nightly forget, as `dedupe gc --max-unused` does: a pack with no
   needed data is deleted; a pack whose unneeded share exceeds `max_unused` is rewritten to its
   needed bytes; otherwise it stays as it is. Each future night's data is its own pack group
   (a snapshot writes its own packs). Index files and manifests stay at today's size.

The size reported for a day is after that night's snapshot, forget and gc; the temporary extra
space a gc repack needs is not included (it is at most one batch of packs). What the history
cannot show, it cannot forecast: a pace of growth that has not started yet. docs/PLAN.md has
the validation against replayed nights and its error.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from dedupe.retention import GroupKey, Policy, SnapshotInfo, apply_policy

ESTIMATE_NIGHTS = 30
"""How many recent snapshots of a group the estimates use."""
DAYS_PER_MONTH = 365.25 / 12
DEFAULT_MARGIN = 1.3
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
class PackUsage:
    """One pack file: its size and its blob bytes grouped by the snapshots referencing them."""

    size: int
    groups: tuple[tuple[int, int], ...]
    """(snapshot bitmask, stored bytes); bit i is `History.snapshots[i]`, mask 0 is garbage."""


@dataclass(frozen=True)
class History:
    """The repository today, as the forecast needs it (built from `dedupe.stats.RepoStats`)."""

    snapshots: tuple[SnapshotInfo, ...]
    """Oldest first (by time, then id); position i is bit i of the masks."""
    added_bytes: tuple[int, ...]
    """Per snapshot: stored bytes it added when it was made."""
    packs: tuple[PackUsage, ...]
    other_bytes: int
    """Stored bytes outside packs (index files, manifests, keys, config): held constant."""

    @property
    def stored_bytes(self) -> int:
        return self.other_bytes + sum(p.size for p in self.packs)


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

    def survive(self, days: int) -> float:
        """S(days): measured up to the longest measured gap K, the fitted tail beyond."""
        last = len(self.survival) - 1
        if days <= last:
            return self.survival[max(days, 0)]
        return self.survival[last] * ((1 + last) / (1 + days)) ** self.tail_exponent

    def survive_given(self, age: int, days: int) -> float:
        """S(age + days) / S(age): the chance that data already `age` days old lasts `days` more."""
        alive = self.survive(age)
        return self.survive(age + days) / alive if alive > 0 else 0.0

    def added_on(self, day: int) -> float:
        """The expected added bytes of night `day` (1 = the night after the newest snapshot)."""
        return self.nightly_bytes + self.nightly_trend * day


@dataclass(frozen=True)
class DayPoint:
    day: date
    stored_bytes: int
    snapshots: int


@dataclass(frozen=True)
class Forecast:
    series: tuple[DayPoint, ...]
    """Day 0 is today's size; day d is after night d's snapshot, forget and gc."""
    estimates: tuple[GroupEstimate, ...]
    margin: float
    pruned: bool
    """False when the policy has no keep rule: forget would refuse it, so nothing is pruned."""

    @property
    def peak(self) -> DayPoint:
        return max(self.series, key=lambda p: (p.stored_bytes, -p.day.toordinal()))

    @property
    def final(self) -> DayPoint:
        return self.series[-1]

    @property
    def drive_bytes(self) -> int:
        return drive_size(self.peak.stored_bytes * self.margin)


def drive_size(needed: float) -> int:
    """The smallest common drive size holding `needed` bytes (beyond 24 TB: whole TB)."""
    for size in DRIVE_SIZES:
        if size >= needed:
            return size
    return math.ceil(needed / (1000 * _GB)) * 1000 * _GB


# --- estimates ---------------------------------------------------------------------------------


def _local_day(moment: datetime, tz: tzinfo | None) -> int:
    return moment.astimezone(tz).date().toordinal()


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
        newest_day = _local_day(history.snapshots[indices[-1]].time, tz)
        nightly = estimate_nightly(
            [_local_day(history.snapshots[i].time, tz) - newest_day for i in recent],
            [history.added_bytes[i] for i in recent],
        )
        points = measure_survival(history, indices, recent, by_mask, tz)
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
            )
        )
    return tuple(estimates)


@dataclass(frozen=True)
class NightlyEstimate:
    """What a group's past nights say about its future ones."""

    level: float
    """Expected added bytes of a night at day 0 (the newest snapshot's day)."""
    trend: float
    """Bytes per day the nightly addition rises by; 0 unless a rise is significant."""
    capped: int
    """Nights counted at the outlier bound."""


def estimate_nightly(days: Sequence[int], added: Sequence[float]) -> NightlyEstimate:
    """The nightly addition from past nights: `days` (0 = the newest snapshot's day, earlier
    nights negative) and what each added.

    The level is a mean, not a median: what the drive must hold is the sum of the nights, and
    nightly additions are skewed (most nights small, some bring a big scan), so a median
    under-counts. One freak night (a reorganised folder) is kept from dominating by counting any
    night above median + 5 robust standard deviations (1.4826 MAD) at that bound.

    The trend is Sen's slope (the median of the pairwise slopes, robust to single big nights),
    used only when Kendall's test puts its 90 % confidence interval above zero: a handful of
    noisy nights says nothing about a trend, and a falling one is not extrapolated (the safe
    side for sizing a drive). The level is the mean moved along the trend to day 0.
    """
    if not added:
        return NightlyEstimate(0.0, 0.0, 0)
    middle = statistics.median(added)
    spread = 1.4826 * statistics.median(abs(a - middle) for a in added)
    bound = middle + 5 * spread if spread > 0 else math.inf
    counted = [min(a, bound) for a in added]
    mean = statistics.fmean(counted)
    trend = rising_trend(days, added)
    level = mean - trend * statistics.fmean(days)
    return NightlyEstimate(level, trend, sum(a > bound for a in added))


def rising_trend(days: Sequence[int], values: Sequence[float], z: float = 1.645) -> float:
    """Sen's slope of `values` over `days` if its two-sided 90 % interval is above 0, else 0."""
    slopes = sorted(
        (values[j] - values[i]) / (days[j] - days[i])
        for i in range(len(days))
        for j in range(i + 1, len(days))
        if days[j] != days[i]
    )
    n = len(days)
    if n < 5 or not slopes:
        return 0.0
    # The interval's lower end is the ((N - C) / 2)-th smallest of the N slopes, C from the
    # variance of Kendall's S (normal approximation, ties ignored); rounded down, the safe side.
    spread = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    lower = math.floor((len(slopes) - spread) / 2) - 1
    if lower < 0 or slopes[lower] <= 0:
        return 0.0
    return statistics.median(slopes)


def measure_survival(
    history: History,
    indices: list[int],
    origins: list[int],
    by_mask: dict[int, int],
    tz: tzinfo | None,
) -> dict[int, tuple[float, float]]:
    """Measured survival: gap in days -> (share still referenced, bytes it was measured on).

    For an origin snapshot i and the group's newest snapshot on each later day (k days later),
    the bytes i references first (no older snapshot of the group references them) and that one
    still references. Only origins whose group has a snapshot on the day before count: after a
    gap (a forgotten weekend, a month end kept alone) an origin's first bytes are several
    nights' data that already survived some days, which would overstate survival. Empty when
    nothing could be measured.
    """
    group_bits = sum(1 << i for i in indices)
    days = {i: _local_day(history.snapshots[i].time, tz) for i in indices}
    newest_of_day: dict[int, int] = {}
    for i in indices:  # oldest first: the last one of a day wins
        newest_of_day[days[i]] = i
    later: dict[int, dict[int, int]] = {}
    for i in origins:
        if days[i] - 1 in newest_of_day:
            later[i] = {d - days[i]: j for d, j in newest_of_day.items() if d > days[i]}
    first_bytes: dict[int, int] = defaultdict(int)
    reached: dict[tuple[int, int], int] = defaultdict(int)
    for mask, size in by_mask.items():
        own = mask & group_bits
        if not own:
            continue
        first = (own & -own).bit_length() - 1
        if first not in later:
            continue
        first_bytes[first] += size
        for gap, j in later[first].items():
            if own >> j & 1:
                reached[first, gap] += size
    numerator: dict[int, float] = defaultdict(float)
    denominator: dict[int, float] = defaultdict(float)
    for i, gaps in later.items():
        for gap in gaps:
            denominator[gap] += first_bytes[i]
            numerator[gap] += reached[i, gap]
    return {gap: (numerator[gap] / den, den) for gap, den in denominator.items() if den > 0}


def survival_curve(points: dict[int, tuple[float, float]]) -> tuple[float, ...]:
    """S(0..K) from the measured points: the weighted non-increasing fit (pool adjacent
    violators), so that one noisy low day does not drag every later day down as a running
    minimum would; a day without measurement takes the previous day's value."""
    gaps = sorted(points)
    blocks: list[tuple[float, float, int]] = []  # (share, weight, days pooled)
    for gap in gaps:
        share, weight = points[gap]
        days = 1
        while blocks and blocks[-1][0] < share:
            prev_share, prev_weight, prev_days = blocks.pop()
            share = (share * weight + prev_share * prev_weight) / (weight + prev_weight)
            weight += prev_weight
            days += prev_days
        blocks.append((share, weight, days))
    pooled = [share for share, _weight, days in blocks for _ in range(days)]
    fitted = dict(zip(gaps, pooled, strict=True))
    curve = [1.0]
    for gap in range(1, max(points) + 1):
        curve.append(min(curve[-1], fitted.get(gap, curve[-1])))
    return tuple(curve)


def fit_tail_exponent(points: dict[int, tuple[float, float]]) -> float:
    """The b of S(k) ~ (1 + k) ** -b over the measured days (k >= 1), by least squares of
    log S on log(1 + k), each day weighted by the bytes measured on it.

    A power law, not an exponential: a night's data is a mixture (a rewritten dump dies within
    days, edited letters within weeks, scans stay for years), and the longer data has lived,
    the likelier it lives on, which is a falling death rate; one exponential fitted to the
    first weeks would also delete long-lived data at the dump's pace. b is at least 0 (data
    does not come back) and 0 when fewer than two days were measured (the tail stays flat).
    """
    usable = [(math.log1p(k), math.log(s), w) for k, (s, w) in points.items() if s > 0]
    if len(usable) < 2:
        return 0.0
    total = sum(w for _x, _y, w in usable)
    mean_x = sum(x * w for x, _y, w in usable) / total
    mean_y = sum(y * w for _x, y, w in usable) / total
    spread = sum(w * (x - mean_x) ** 2 for x, _y, w in usable)
    if spread <= 0:
        return 0.0
    slope = sum(w * (x - mean_x) * (y - mean_y) for x, y, w in usable) / spread
    return max(0.0, -slope)


# --- the replay --------------------------------------------------------------------------------


@dataclass
class _Night:
    """A simulated night's data: its own pack group."""

    estimate: int
    day: int
    added: float
    stored: float


@dataclass
class _Pack:
    """An existing pack: its blob bytes as gc left them, and its groups with their carries."""

    stored: float
    overhead: int
    groups: list[tuple[int, int, list[tuple[int, int]]]]
    """(mask, bytes, [(estimate index, age in days of the data at that group's newest)])."""


def forecast(
    history: History,
    policy: Policy,
    days: int,
    *,
    tz: tzinfo | None = None,
    growth_per_month: float = 0.0,
    max_unused: float = 0.10,
    margin: float = DEFAULT_MARGIN,
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
    nights: list[_Night] = []
    night_ids: dict[str, int] = {}
    bit_of = {info.id: i for i, info in enumerate(history.snapshots)}
    alive: list[SnapshotInfo] = list(history.snapshots)
    start = max(info.time for info in history.snapshots).astimezone(tz).date()
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
            nights.append(_Night(e, day, added, added))
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
        stored = history.other_bytes + _gc_existing(
            packs, alive_bits, alive_days, estimates, day, max_unused
        )
        stored += _gc_nights(nights, alive_days, estimates, day, max_unused)
        series.append(DayPoint(start + timedelta(days=day), round(stored), len(alive)))
    return Forecast(tuple(series), estimates, margin, prune)


def _night_time(newest: datetime, day: int, tz: tzinfo | None) -> datetime:
    """The same local wall-clock time `day` days after `newest` (DST-proof: a night never
    slides across midnight into another calendar day)."""
    wall = newest.astimezone(tz).replace(tzinfo=None) + timedelta(days=day)
    return wall.astimezone() if tz is None else wall.replace(tzinfo=tz)


def _existing_packs(
    history: History, estimates: tuple[GroupEstimate, ...], tz: tzinfo | None
) -> list[_Pack]:
    """Existing packs with, per mask, which groups' future snapshots carry the data on."""
    day_of = [_local_day(info.time, tz) for info in history.snapshots]
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
        packs.append(_Pack(float(blob_bytes), max(0, pack.size - blob_bytes), groups))
    return packs


def _next_alive(alive_days: list[int], day: int, today: int) -> int:
    """Days from `day` to the first kept simulated snapshot at or after it; when none is kept,
    tomorrow's snapshot (which always comes) is the next one that can still reference it."""
    i = bisect.bisect_left(alive_days, day)
    return (alive_days[i] if i < len(alive_days) else today + 1) - day


def _collect(stored: float, live: float, overhead: int, max_unused: float) -> float:
    """What gc leaves of a pack holding `stored` blob bytes of which `live` are needed."""
    live = min(live, stored)
    if live <= 0:
        return 0.0
    if (stored - live) / (stored + overhead) > max_unused:
        return live
    return stored


def _gc_existing(
    packs: list[_Pack],
    alive_bits: int,
    alive_days: list[list[int]],
    estimates: tuple[GroupEstimate, ...],
    today: int,
    max_unused: float,
) -> float:
    total = 0.0
    carry_gap = [_next_alive(found, 0, today) for found in alive_days]
    for pack in packs:
        if pack.stored <= 0:
            continue
        live = 0.0
        for mask, size, carries in pack.groups:
            if mask & alive_bits:
                live += size
            elif carries:
                live += size * max(
                    estimates[e].survive_given(age, carry_gap[e]) for e, age in carries
                )
        pack.stored = _collect(pack.stored, live, pack.overhead, max_unused)
        if pack.stored > 0:
            total += pack.stored + pack.overhead
    return total


def _gc_nights(
    nights: list[_Night],
    alive_days: list[list[int]],
    estimates: tuple[GroupEstimate, ...],
    today: int,
    max_unused: float,
) -> float:
    total = 0.0
    for night in nights:
        if night.stored <= 0:
            continue
        gap = _next_alive(alive_days[night.estimate], night.day, today)
        live = estimates[night.estimate].survive(gap) * night.added
        night.stored = _collect(night.stored, live, 0, max_unused)
        total += night.stored
    return total
