"""The retention policy's values: the policy, what it knows of a snapshot, and its verdicts.

`Policy` validates itself when built (counts, business days, the fiscal year's first month), so
`apply_policy` (`dedupe.retention.rules`) never meets a malformed one, and says itself as flags
(`describe`). `SnapshotInfo` is all the policy sees of a snapshot (`snapshot_info` is the one
mapping from a manifest, shared by `forget` and `plan`); `Decision` is the verdict with its
reasons, and `decisions_to_json` the contract's `forget --json` object. Pure values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Final

from dedupe.model.snapshot import Snapshot
from dedupe.retention.periods import Duration

UNLIMITED: Final[int] = -1
"""A rule count meaning "every bucket that has a snapshot"."""

WEEKDAY_NAMES: Final[tuple[str, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONDAY_TO_FRIDAY: Final[frozenset[int]] = frozenset(range(5))

GroupKey = tuple[str, tuple[str, ...]]


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
        for name in COUNT_FIELDS:
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
        counts = (getattr(self, name) for name in COUNT_FIELDS)
        return (
            any(count is not None and count != 0 for count in counts)
            or self.keep_within is not None
            or bool(self.keep_tags)
        )

    def describe(self) -> str:
        """The policy as flags, e.g. "--keep-business-days 10 --keep-monthly unlimited"."""
        words: list[str] = []
        for name in COUNT_FIELDS:
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


COUNT_FIELDS: Final[tuple[str, ...]] = (  # the rules that count buckets, in flag order
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
