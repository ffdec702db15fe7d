"""What a repository's history says about its future nights: the estimators behind `dedupe plan`.

Pure functions of the history (no I/O, no clock): the level and trend of the nightly added bytes
(`estimate_nightly`, `rising_trend`), how long a night's data stays referenced
(`measure_survival`, `survival_curve`, `fit_tail_exponent`), and, measured apart from it, how long
the data a snapshot already shares with older ones (the base folder, slow-changing files) stays
referenced (`measure_standing`). `dedupe.plan.projection` combines them with the retention
policy; docs/PLAN.md explains the choices and their measured error.

Why two curves: a night's addition and the data every snapshot shares are different populations.
A night that adds a 1 MiB dump which is gone the next night says nothing about the 30 MiB base
folder every snapshot references; judging the base by the nights' curve (S(1) = 0 there) frees
it as soon as its first snapshot is forgotten, an under-estimate of the whole base.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from dedupe.retention import SnapshotInfo, local_time


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


def local_day(moment: datetime, tz: tzinfo | None) -> int:
    return local_time(moment, tz).date().toordinal()


@dataclass(frozen=True)
class NightlyEstimate:
    """What a group's past nights say about its future ones."""

    level: float
    """Expected added bytes of a night at day 0 (the newest snapshot's day)."""
    trend: float
    """Bytes per day the nightly addition rises by; 0 unless a rise is significant."""
    capped: int
    """Nights counted at the outlier bound."""
    error: float = 0.0
    """Standard error of the level (standard deviation of the counted nights / sqrt(n)): the
    uncertainty band of a forecast moves the level by 1.645 of these (90 %, two-sided)."""


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
    error = statistics.stdev(counted) / math.sqrt(len(counted)) if len(counted) > 1 else 0.0
    return NightlyEstimate(level, trend, sum(a > bound for a in added), error)


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
    days = {i: local_day(history.snapshots[i].time, tz) for i in indices}
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


def measure_standing(
    history: History,
    indices: list[int],
    origins: list[int],
    by_mask: dict[int, int],
    tz: tzinfo | None,
) -> dict[int, tuple[float, float]]:
    """Measured standing survival: gap in days -> (share still referenced, bytes measured on).

    For each origin snapshot i of the group that has an older one, its standing data is the bytes it
    references that an older snapshot of the group references too (data at least a night old:
    the base folder, files that did not change); measured is the share of them that the group's
    newest snapshot on each later day (k days after i) still references. This is the population
    the forecast carries on from today's newest snapshot, and it is measured on that population,
    not borrowed from the nightly additions. Empty when nothing could be measured.
    """
    group_bits = sum(1 << i for i in indices)
    days = {i: local_day(history.snapshots[i].time, tz) for i in indices}
    newest_of_day: dict[int, int] = {}
    for i in indices:
        newest_of_day[days[i]] = i
    later = {
        i: {d - days[i]: j for d, j in newest_of_day.items() if d > days[i]}
        for i in origins
        if i != indices[0]
    }
    numerator: dict[int, float] = defaultdict(float)
    denominator: dict[int, float] = defaultdict(float)
    for mask, size in by_mask.items():
        own = mask & group_bits
        if not own:
            continue
        first = (own & -own).bit_length() - 1
        for i, gaps in later.items():
            if i <= first or not own >> i & 1:
                continue
            for gap, j in gaps.items():
                denominator[gap] += size
                if own >> j & 1:
                    numerator[gap] += size
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
