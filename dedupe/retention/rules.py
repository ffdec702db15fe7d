"""The decision: which snapshots a policy keeps, and why (`apply_policy`).

Snapshots are judged within their group (host and source paths), newest first; each rule adds
its reasons, a snapshot with any reason is kept, and max-backups is applied last. Only buckets
that hold a snapshot count, so a gap in backups reaches further back instead of deleting
anything. The result depends only on the arguments, never on their order, the clock or the
machine. The rules are described in `dedupe.retention`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any, Final

from dedupe.retention.periods import fiscal_quarter, fiscal_year, utc_instant
from dedupe.retention.policy import (
    UNLIMITED,
    Decision,
    GroupKey,
    Policy,
    Reason,
    ReasonKind,
    SnapshotInfo,
)


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
