"""The calendar page's content: a month grid of one source's backups, each marked kept, held or
would-be-removed, with the reasons.

The verdicts are `forget --dry-run`'s, made the same way: every readable manifest, judged as
held when a hold record names it (`dedupe.repo.manifests.held_by_record`), mapped by
`retention.snapshot_info` and decided by the pure `retention.apply_policy` in the local time
zone, under the profile's `[policy]`. A profile without a policy (or a repository served
without a profile) has no keep rule: `forget` refuses to run then, so nothing would be removed,
and the page says so instead of marking everything for removal.

A "source" is a retention group (host and source paths); where a profile's `[[source]]` has
those paths (or that stream name), the group is called by the source's name.
"""

from __future__ import annotations

import calendar as calendar_mod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from dedupe.plan.drive import policy_words
from dedupe.profile.model import Profile
from dedupe.repo import manifests
from dedupe.repo.repository import Repository
from dedupe.retention import Decision, Policy, apply_policy, local_time, snapshot_info

KEPT, HELD, REMOVED = "kept", "held", "removed"
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Mark:
    """One backup in a day's cell."""

    snapshot_id: str
    time: str  # HH:MM, local
    verdict: str  # KEPT, HELD or REMOVED
    words: str  # "kept", "held", "would be removed"
    reasons: str


@dataclass
class Day:
    day: date
    in_month: bool
    marks: list[Mark] = field(default_factory=list)


@dataclass
class Group:
    key: tuple[str, tuple[str, ...]]
    label: str
    decisions: list[Decision]


@dataclass
class CalendarView:
    groups: list[Group]
    group_index: int
    year: int
    month: int
    weeks: list[list[Day]]
    policy_text: str
    has_rule: bool
    counts: dict[str, int]
    months: list[tuple[int, int]]  # months with backups in this group, oldest first
    damaged: list[str]
    weekdays: Sequence[str] = _WEEKDAYS

    @property
    def title(self) -> str:
        return f"{calendar_mod.month_name[self.month]} {self.year}"

    def neighbour(self, step: int) -> tuple[int, int] | None:
        """The previous (-1) or next (+1) month that has backups, or None."""
        here = (self.year, self.month)
        months = [m for m in self.months if (m < here if step < 0 else m > here)]
        if not months:
            return None
        return months[-1] if step < 0 else months[0]


def decide(repo: Repository, policy: Policy | None, damaged: list[str]) -> list[Decision]:
    """What `forget --dry-run` would decide for every readable snapshot (with no keep rule:
    everything kept, as forget would refuse to remove anything)."""
    records = manifests.load_hold_records(repo, damaged)
    infos = [
        snapshot_info(manifests.held_by_record(snap, records))
        for snap in manifests.load_all(repo, damaged)
    ]
    rules = policy if policy is not None and policy.has_keep_rule() else None
    if rules is None:
        return [Decision(d.snapshot, True, d.reasons) for d in apply_policy(infos, Policy(), None)]
    return apply_policy(infos, rules, None)


def build(
    repo: Repository,
    profile: Profile | None,
    group_index: int,
    month: tuple[int, int] | None,
) -> CalendarView:
    """The grid of one group (by index, 0 when out of range) and month (default: the month of
    its newest backup)."""
    policy = profile.policy if profile is not None else None
    has_rule = policy is not None and policy.has_keep_rule()
    damaged: list[str] = []
    decisions = decide(repo, policy, damaged)
    groups: dict[tuple[str, tuple[str, ...]], list[Decision]] = {}
    for decision in decisions:
        groups.setdefault(decision.snapshot.group_key, []).append(decision)
    group_list = [Group(key, _label(key, profile), items) for key, items in groups.items()]
    group_list.sort(key=lambda g: g.label.lower())
    if not 0 <= group_index < len(group_list):
        group_index = 0
    chosen = group_list[group_index].decisions if group_list else []
    by_day: dict[date, list[Decision]] = {}
    for decision in chosen:
        day = local_time(decision.snapshot.time, None).date()
        by_day.setdefault(day, []).append(decision)
    months = sorted({(d.year, d.month) for d in by_day})
    if month is None:
        month = months[-1] if months else (date.today().year, date.today().month)
    year, month_number = month
    weeks = []
    counts = {KEPT: 0, HELD: 0, REMOVED: 0}
    for week in calendar_mod.Calendar(0).monthdatescalendar(year, month_number):
        row = []
        for day in week:
            cell = Day(day, day.month == month_number)
            for decision in sorted(by_day.get(day, []), key=lambda d: d.snapshot.time):
                mark = _mark(decision, has_rule)
                cell.marks.append(mark)
                if cell.in_month:
                    counts[mark.verdict] += 1
            row.append(cell)
        weeks.append(row)
    if policy is None:
        policy_text = "no retention policy in the profile" if profile else "no profile"
    else:
        policy_text = f"{policy_words(policy)} ({policy.describe()})"
    return CalendarView(
        groups=group_list,
        group_index=group_index,
        year=year,
        month=month_number,
        weeks=weeks,
        policy_text=policy_text,
        has_rule=has_rule,
        counts=counts,
        months=months,
        damaged=damaged,
    )


def _mark(decision: Decision, has_rule: bool) -> Mark:
    snap = decision.snapshot
    when = local_time(snap.time, None).strftime("%H:%M")
    if snap.held:
        verdict, words = HELD, "held"
    elif decision.keep:
        verdict, words = KEPT, "kept"
    else:
        verdict, words = REMOVED, "would be removed"
    reasons = ", ".join(decision.texts)
    if snap.held and snap.hold_reason and snap.hold_reason not in reasons:
        reasons = f"held: {snap.hold_reason}" + (f", {reasons}" if reasons else "")
    if not has_rule and not snap.held:
        reasons = "no keep rule: forget would not run"
    elif not reasons and verdict == REMOVED:
        reasons = "no rule of the policy keeps it"
    return Mark(snap.id, when, verdict, words, reasons)


def _label(key: tuple[str, tuple[str, ...]], profile: Profile | None) -> str:
    host, paths = key
    where = ", ".join(paths)
    if profile is not None:
        wanted = set(paths)
        for source in profile.sources:
            names = set(source.paths)
            if source.stdin_name:
                names |= {source.stdin_name, "/" + source.stdin_name.lstrip("/")}
            if wanted and wanted <= names:
                return f"{source.name} ({host}: {where})"
    return f"{host}: {where}"


def parse_month(text: str | None) -> tuple[int, int] | None:
    """ "2026-05" -> (2026, 5); anything else -> None (the default month)."""
    if not text:
        return None
    try:
        year, month = (int(part) for part in text.split("-", 1))
    except ValueError:
        return None
    if 1 <= month <= 12 and 1900 <= year <= 9999:
        return year, month
    return None
