"""Retention policy: which snapshots a policy keeps, and why. Pure: no I/O, no clock.

`apply_policy` takes plain `SnapshotInfo` values and a `Policy` and returns one `Decision` per
snapshot (keep or remove, with the reasons). It never reads the repository, the environment or the
system clock, so `forget`, `forget --dry-run` and `plan` (which replays history day by day) get
exactly the same answer for the same input, and tests can build any calendar they like. Every rule
is relative to the snapshots themselves (the newest one of a group stands in for "now"); that is
also what makes a gap in backups harmless.

What keeps what
---------------
Snapshots are grouped by host and source paths; each group is judged on its own. Times are
converted to the caller's local time zone before any calendar question is asked, so a backup taken
at 23:30 UTC counts as the next day in Berlin. Within a group, "newest" means the latest instant
(ties broken by id, so the result never depends on input order).

- held: a held snapshot is always kept and is never removed by any rule or by max-backups.
- keep-last N: the N newest snapshots.
- keep-business-days N: for each of the N most recent business days that have a snapshot, the
  newest snapshot of that day. A business day is a date whose weekday is in `business_days` and
  which is not in `holidays`; a snapshot taken on any other day is ignored by this rule.
- keep-daily / keep-weekly (ISO weeks) / keep-monthly N: the newest snapshot of each of the N most
  recent days / weeks / calendar months that have a snapshot. The newest of a month is its
  "month end" backup (for the current month: the newest so far).
- keep-quarterly N: the same over quarters of the fiscal year (Q1 starts in `fiscal_year_start`).
- keep-yearly N: the same over fiscal years. A fiscal year is named by the calendar year in which it
  ends: with `fiscal_year_start=7`, July 2025 to June 2026 is FY2026.
- keep-within D: every snapshot no older than D before the group's newest snapshot (inclusive).
- keep-tag T: every snapshot carrying one of the tags.
- N may be `UNLIMITED`; 0 keeps nothing (and does not count as a keep rule).
- max-backups N: applied last. If a group still keeps more than N snapshots, the oldest kept
  snapshots that are not held are removed until N remain (or only held ones are left). Held
  snapshots count toward N.

Only buckets that contain a snapshot are counted, so weeks without backups never push the newest
backups out of "the last 10 business days": the policy then reaches further back instead.
A policy without any keep rule keeps only held snapshots; callers must refuse to act on it
(`Policy.has_keep_rule`).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Final

from dedupe.model.snapshot import Snapshot

UNLIMITED: Final[int] = -1
"""A rule count meaning "every bucket that has a snapshot"."""

WEEKDAY_NAMES: Final[tuple[str, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONDAY_TO_FRIDAY: Final[frozenset[int]] = frozenset(range(5))

GroupKey = tuple[str, tuple[str, ...]]

# One day inside datetime's range: every UTC offset is under a day, so an instant in this range
# converts to any time zone without overflowing.
EARLIEST: Final[datetime] = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST: Final[datetime] = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def utc_instant(moment: datetime) -> datetime:
    """`moment` in UTC, clamped to [EARLIEST, LATEST].

    A manifest can hold a time that has no UTC equivalent (year 1 at +14:00 is before
    datetime.min in UTC; year 9999 at -14:00 after datetime.max), and older versions accepted
    one from `snapshot --time`. Clamped, such a snapshot is simply the oldest (or newest) and
    every rule, listing and `forget` handle it; without the clamp each conversion overflows."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        return EARLIEST if moment.year < 5000 else LATEST
    return min(max(utc, EARLIEST), LATEST)


def local_time(moment: datetime, tz: tzinfo | None) -> datetime:
    """`moment` in `tz` (None: the system's zone), for any stored time (see `utc_instant`)."""
    return utc_instant(moment).astimezone(tz)


class ReasonKind(StrEnum):
    """The short, stable name of a reason: what `forget --json` prints in `reasons`."""

    HELD = "held"
    LAST = "last"
    BUSINESS_DAY = "business day"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTH_END = "month end"
    QUARTER_END = "quarter end"
    FISCAL_YEAR_END = "fiscal year end"
    WITHIN = "within"
    TAG = "tag"
    MAX_BACKUPS = "max backups"


@dataclass(frozen=True)
class Reason:
    """Why a snapshot is kept (or, for max-backups, removed): a stable kind and a human text."""

    kind: ReasonKind
    text: str

    def __str__(self) -> str:
        return self.text


_DURATION_SYNTAX = re.compile(r"(?:\d+[ymwdh])+")
_DURATION_PART = re.compile(r"(\d+)([ymwdh])")


@dataclass(frozen=True)
class Duration:
    """A calendar span for keep-within: "14d", "2w", "6m" (months), "1y", "12h", or "1y6m".

    Years, months and days are calendar arithmetic in local time (one month before 31 March is
    28 or 29 February), so "1m" means the same wall-clock time a month earlier; hours are exact.
    """

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __post_init__(self) -> None:
        amounts = (self.years, self.months, self.days, self.hours)
        if any(amount < 0 for amount in amounts) or not any(amounts):
            raise ValueError("a duration must be positive")

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse "14d", "6m", "1y", "2w", "12h" or a combination such as "1y6m" (ValueError)."""
        compact = text.strip().lower()
        if not _DURATION_SYNTAX.fullmatch(compact):
            raise ValueError(
                f"{text!r} is not a duration: use a number and a unit, y (years), m (months), "
                "w (weeks), d (days) or h (hours), e.g. 14d, 6m, 1y"
            )
        amounts: dict[str, int] = {}
        for number, unit in _DURATION_PART.findall(compact):
            if unit in amounts:
                raise ValueError(f"{text!r} names the unit {unit!r} twice")
            amounts[unit] = int(number)
        return cls(
            years=amounts.get("y", 0),
            months=amounts.get("m", 0),
            days=amounts.get("d", 0) + 7 * amounts.get("w", 0),
            hours=amounts.get("h", 0),
        )

    def __str__(self) -> str:
        parts = zip((self.years, self.months, self.days, self.hours), "ymdh", strict=True)
        return "".join(f"{amount}{unit}" for amount, unit in parts if amount)

    def start_before(self, moment: datetime, tz: tzinfo | None) -> datetime:
        """The instant (in UTC) this span before `moment`, with calendar steps in `tz`.

        `tz=None` is the system's local zone: a naive wall time converts as local time."""
        local = local_time(moment, tz)
        month_index = local.year * 12 + local.month - 1 - (self.years * 12 + self.months)
        year, month0 = divmod(month_index, 12)
        if year < 1:
            return datetime.min.replace(tzinfo=UTC)
        day = min(local.day, calendar.monthrange(year, month0 + 1)[1])
        wall = local.replace(tzinfo=None, year=year, month=month0 + 1, day=day)
        try:
            wall -= timedelta(days=self.days)
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC)
        start = utc_instant(wall.replace(tzinfo=tz))
        try:
            return start - timedelta(hours=self.hours)
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SnapshotInfo:
    """What the policy needs to know of a snapshot; `time` must carry a time zone."""

    id: str
    time: datetime
    host: str
    paths: tuple[str, ...]
    tags: frozenset[str] = frozenset()
    held: bool = False
    hold_reason: str | None = None

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError(f"snapshot {self.id}: time {self.time} has no time zone")

    @property
    def group_key(self) -> GroupKey:
        """Host and source paths (order-insensitive): the policy applies within each group."""
        return (self.host, tuple(sorted(set(self.paths))))


def snapshot_info(snap: Snapshot) -> SnapshotInfo:
    """What the policy needs of a snapshot: paths as display strings define its group. The one
    mapping, so `forget` and `plan` judge the same snapshots the same way."""
    return SnapshotInfo(
        id=snap.id,
        time=snap.time,
        host=snap.host,
        paths=tuple(snap.display_paths()),
        tags=frozenset(snap.tags),
        held=snap.held,
        hold_reason=snap.hold_reason,
    )


def _check_count(name: str, value: int | None) -> None:
    if value is None or value == UNLIMITED:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0 or unlimited, not {value!r}")


@dataclass(frozen=True)
class Policy:
    """A retention policy. A count of None means the rule is absent; UNLIMITED means every bucket.

    Build one directly, or from command-line flags and a TOML file with
    `dedupe.cli.policy_args.policy_from_args`.
    """

    keep_last: int | None = None
    keep_business_days: int | None = None
    business_days: frozenset[int] = MONDAY_TO_FRIDAY
    holidays: frozenset[date] = frozenset()
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_quarterly: int | None = None
    keep_yearly: int | None = None
    fiscal_year_start: int = 1
    keep_within: Duration | None = None
    keep_tags: frozenset[str] = frozenset()
    max_backups: int | None = None

    def __post_init__(self) -> None:
        for name in _COUNT_FIELDS:
            _check_count(name, getattr(self, name))
        if self.max_backups is not None and (
            isinstance(self.max_backups, bool)
            or not isinstance(self.max_backups, int)
            or self.max_backups < 1
        ):
            # 0 would remove every snapshot that is not held: never what anyone meant.
            raise ValueError(f"max_backups must be a whole number >= 1, not {self.max_backups!r}")
        if not self.business_days or not self.business_days <= frozenset(range(7)):
            raise ValueError("business_days must be a non-empty set of weekdays 0 (Mon) .. 6 (Sun)")
        if not 1 <= self.fiscal_year_start <= 12:
            raise ValueError(
                f"fiscal_year_start must be a month 1..12, not {self.fiscal_year_start}"
            )

    def has_keep_rule(self) -> bool:
        """True if some rule can keep a snapshot; `forget` refuses to run otherwise."""
        counts = (getattr(self, name) for name in _COUNT_FIELDS)
        return (
            any(count is not None and count != 0 for count in counts)
            or self.keep_within is not None
            or bool(self.keep_tags)
        )

    def describe(self) -> str:
        """The policy as flags, e.g. "--keep-business-days 10 --keep-monthly unlimited"."""
        words: list[str] = []
        for name in _COUNT_FIELDS:
            count = getattr(self, name)
            if count is not None:
                words.append(f"--{name.replace('_', '-')} {_count_text(count)}")
        if self.keep_business_days is not None and self.business_days != MONDAY_TO_FRIDAY:
            days = ",".join(WEEKDAY_NAMES[day] for day in sorted(self.business_days))
            words.append(f"--business-days {days}")
        if self.holidays:
            words.append(f"(holidays: {len(self.holidays)})")
        if self.fiscal_year_start != 1:
            words.append(f"--fiscal-year-start {self.fiscal_year_start}")
        if self.keep_within is not None:
            words.append(f"--keep-within {self.keep_within}")
        words.extend(f"--keep-tag {tag}" for tag in sorted(self.keep_tags))
        if self.max_backups is not None:
            words.append(f"--max-backups {self.max_backups}")
        return " ".join(words) if words else "(no rules)"


_COUNT_FIELDS: Final[tuple[str, ...]] = (
    "keep_last",
    "keep_business_days",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_quarterly",
    "keep_yearly",
)


def _count_text(count: int) -> str:
    return "unlimited" if count == UNLIMITED else str(count)


@dataclass(frozen=True)
class Decision:
    """The verdict on one snapshot. For a kept snapshot `reasons` says which rules keep it; for a
    removed one it is empty, or names max-backups when that cap removed it."""

    snapshot: SnapshotInfo
    keep: bool
    reasons: tuple[Reason, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        """The distinct short reason names, in order (the contract's JSON `reasons`)."""
        return tuple(dict.fromkeys(str(reason.kind) for reason in self.reasons))

    @property
    def texts(self) -> tuple[str, ...]:
        """The human reasons, e.g. ("business day 1 of 10", "month end 2026-05")."""
        return tuple(reason.text for reason in self.reasons)


def fiscal_year(day: date, start_month: int) -> int:
    """The fiscal year containing `day`, named by the calendar year in which it ends."""
    return day.year + 1 if start_month != 1 and day.month >= start_month else day.year


def fiscal_quarter(day: date, start_month: int) -> tuple[int, int]:
    """(fiscal year, quarter 1..4), quarters counted from the fiscal year's first month."""
    return fiscal_year(day, start_month), (day.month - start_month) % 12 // 3 + 1


@dataclass(frozen=True)
class _CalendarRule:
    """A "newest snapshot of each of the N most recent buckets" rule."""

    field: str
    kind: ReasonKind
    bucket: Callable[[date, Policy], Hashable | None]  # None: this rule ignores the day
    text: Callable[[Any, int, int], str]  # (bucket, rank from 1, count) -> human reason


def _business_day(day: date, policy: Policy) -> date | None:
    if day.weekday() in policy.business_days and day not in policy.holidays:
        return day
    return None


def _rank_text(label: str, rank: int, count: int) -> str:
    return f"{label} {rank}" if count == UNLIMITED else f"{label} {rank} of {count}"


_CALENDAR_RULES: Final[tuple[_CalendarRule, ...]] = (
    _CalendarRule(
        "keep_business_days",
        ReasonKind.BUSINESS_DAY,
        _business_day,
        lambda _day, rank, count: _rank_text("business day", rank, count),
    ),
    _CalendarRule(
        "keep_daily",
        ReasonKind.DAILY,
        lambda day, _policy: day,
        lambda day, _rank, _count: f"daily {day.isoformat()}",
    ),
    _CalendarRule(
        "keep_weekly",
        ReasonKind.WEEKLY,
        lambda day, _policy: day.isocalendar()[:2],
        lambda week, _rank, _count: f"week {week[0]}-W{week[1]:02d}",
    ),
    _CalendarRule(
        "keep_monthly",
        ReasonKind.MONTH_END,
        lambda day, _policy: (day.year, day.month),
        lambda month, _rank, _count: f"month end {month[0]}-{month[1]:02d}",
    ),
    _CalendarRule(
        "keep_quarterly",
        ReasonKind.QUARTER_END,
        lambda day, policy: fiscal_quarter(day, policy.fiscal_year_start),
        lambda quarter, _rank, _count: f"quarter end FY{quarter[0]} Q{quarter[1]}",
    ),
    _CalendarRule(
        "keep_yearly",
        ReasonKind.FISCAL_YEAR_END,
        lambda day, policy: fiscal_year(day, policy.fiscal_year_start),
        lambda year, _rank, _count: f"fiscal year end FY{year}",
    ),
)


@dataclass(frozen=True)
class _Entry:
    snapshot: SnapshotInfo
    utc: datetime
    local_day: date


def apply_policy(
    snapshots: Iterable[SnapshotInfo], policy: Policy, tz: tzinfo | None
) -> list[Decision]:
    """Decide keep or remove for every snapshot; calendar questions are answered in `tz`.

    `tz=None` means the system's local zone, judged per instant, so summer and winter time are
    both right (a fixed offset such as `datetime.now().astimezone().tzinfo` would not be); this is
    what the CLI wants. Tests and `plan` pass an explicit zone.

    Returns one decision per snapshot, grouped by `SnapshotInfo.group_key` (groups in sorted
    order) and newest first within a group. The result depends only on the arguments, not on
    their order. The caller decides what to do with a policy that has no keep rule.
    """
    groups: dict[GroupKey, list[_Entry]] = {}
    for snapshot in snapshots:
        utc = utc_instant(snapshot.time)
        entry = _Entry(snapshot, utc, utc.astimezone(tz).date())
        groups.setdefault(snapshot.group_key, []).append(entry)
    decisions: list[Decision] = []
    for key in sorted(groups):
        # Same-tz aware datetimes compare by wall clock, so order by the UTC instant.
        entries = sorted(groups[key], key=lambda e: (e.utc, e.snapshot.id), reverse=True)
        decisions.extend(_decide_group(entries, policy, tz))
    return decisions


def _decide_group(entries: list[_Entry], policy: Policy, tz: tzinfo | None) -> list[Decision]:
    """Apply every rule to one group, `entries` newest first."""
    reasons: list[list[Reason]] = [[] for _ in entries]
    for index, entry in enumerate(entries):
        if entry.snapshot.held:
            why = entry.snapshot.hold_reason
            reasons[index].append(Reason(ReasonKind.HELD, f"held: {why}" if why else "held"))
    if policy.keep_last:
        newest = entries if policy.keep_last == UNLIMITED else entries[: policy.keep_last]
        for index in range(len(newest)):
            reasons[index].append(Reason(ReasonKind.LAST, f"last {index + 1}"))
    for rule in _CALENDAR_RULES:
        count = getattr(policy, rule.field)
        if count:
            _apply_calendar_rule(rule, count, entries, policy, reasons)
    if policy.keep_within is not None and entries:
        start = policy.keep_within.start_before(entries[0].utc, tz)
        for index, entry in enumerate(entries):
            if entry.utc >= start:
                reasons[index].append(Reason(ReasonKind.WITHIN, f"within {policy.keep_within}"))
    if policy.keep_tags:
        for index, entry in enumerate(entries):
            for tag in sorted(entry.snapshot.tags & policy.keep_tags):
                reasons[index].append(Reason(ReasonKind.TAG, f"tag {tag}"))
    keep = [bool(why) for why in reasons]
    if policy.max_backups is not None:
        _cap(entries, keep, reasons, policy.max_backups)
    return [
        Decision(entry.snapshot, kept, tuple(why))
        for entry, kept, why in zip(entries, keep, reasons, strict=True)
    ]


def _apply_calendar_rule(
    rule: _CalendarRule,
    count: int,
    entries: list[_Entry],
    policy: Policy,
    reasons: list[list[Reason]],
) -> None:
    # Only buckets holding a snapshot are counted, and the first one met (newest first) wins
    # its bucket: a gap in backups therefore reaches further back instead of deleting anything.
    seen: set[Hashable] = set()
    for index, entry in enumerate(entries):
        bucket = rule.bucket(entry.local_day, policy)
        if bucket is None or bucket in seen:
            continue
        if count != UNLIMITED and len(seen) >= count:
            break
        seen.add(bucket)
        reasons[index].append(Reason(rule.kind, rule.text(bucket, len(seen), count)))


def _cap(entries: list[_Entry], keep: list[bool], reasons: list[list[Reason]], cap: int) -> None:
    """max-backups: drop the oldest kept, non-held snapshots until at most `cap` are kept."""
    excess = sum(keep) - cap
    for index in reversed(range(len(entries))):
        if excess <= 0:
            return
        if not keep[index] or entries[index].snapshot.held:
            continue
        was = ", ".join(reason.text for reason in reasons[index])
        keep[index] = False
        reasons[index] = [Reason(ReasonKind.MAX_BACKUPS, f"over max-backups {cap} (was: {was})")]
        excess -= 1


def decisions_to_json(decisions: Iterable[Decision]) -> dict[str, list[dict[str, Any]]]:
    """The contract's `forget --json` object: `keep` [{id, time, reasons}], `remove` [{id, time}].

    `reasons` holds the short kinds; `details` (an addition) holds the human texts.
    """
    result: dict[str, list[dict[str, Any]]] = {"keep": [], "remove": []}
    for decision in decisions:
        item: dict[str, Any] = {
            "id": decision.snapshot.id,
            "time": decision.snapshot.time.isoformat(),
        }
        if decision.keep:
            item["reasons"] = list(decision.kinds)
        item["details"] = list(decision.texts)
        result["keep" if decision.keep else "remove"].append(item)
    return result
