"""A retention policy from its settings (`keep-business-days = 10`, ...), validated in one place.

A setting is a raw value (a string from a flag, or a TOML value from a `--policy` file or a
profile's `[policy]` table) with its origin, so that a bad value reads the same wherever it came
from and the message points at it: `policy.toml: keep-last: -3 is negative; ...`.

    policy = policy_from_settings({"keep-last": PolicySetting("3", "--keep-last", Path.cwd())})

The names are the flags without their dashes (`POLICY_KEYS`); `holidays-file` exists only in
files, and a relative file name is resolved against the setting's `base_dir`. Pure apart from
reading a holidays file; used by `dedupe.cli.policy_args` and the profile loader.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from dedupe.errors import UsageError
from dedupe.retention import MONDAY_TO_FRIDAY, UNLIMITED, WEEKDAY_NAMES, Duration, Policy

COUNT_SETTINGS = (
    "keep-last",
    "keep-business-days",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-quarterly",
    "keep-yearly",
)
OTHER_SETTINGS = (
    "business-days",
    "holidays",
    "fiscal-year-start",
    "keep-within",
    "keep-tag",
    "max-backups",
)
FILE_ONLY_SETTINGS = ("holidays-file",)
POLICY_KEYS = (*COUNT_SETTINGS, *OTHER_SETTINGS, *FILE_ONLY_SETTINGS)
_WHOLE_NUMBER = re.compile(r"[+-]?\d+")
_WEEKDAY_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class PolicySetting:
    """A raw value and where it came from, so that an error can point at it."""

    value: Any
    origin: str  # "--keep-daily" or "policy.toml: keep-daily"
    base_dir: Path  # relative file names are resolved against this


def parse_weekday(name: str, origin: str) -> int:
    """'mon' or 'monday' (any case) -> 0 .. 'sun' -> 6; UsageError naming `origin` otherwise."""
    key = name.lower()
    for number, short in enumerate(WEEKDAY_NAMES):
        if key == short or key == _WEEKDAY_FULL[number]:
            return number
    raise UsageError(f"{origin}: {name!r} is not a weekday; use mon, tue, wed, thu, fri, sat, sun")


def policy_from_settings(settings: Mapping[str, PolicySetting]) -> Policy:
    """The Policy of `settings` (names as in `POLICY_KEYS`); UsageError naming a bad one."""

    def parsed(name: str, parse: Callable[[PolicySetting], Any]) -> Any:
        setting = settings.get(name)
        return None if setting is None else parse(setting)

    holidays = frozenset(
        (parsed("holidays", _parse_holidays) or frozenset())
        | (parsed("holidays-file", _parse_holidays_file) or frozenset())
    )
    tags = parsed("keep-tag", _parse_tags)
    try:
        return Policy(
            keep_last=parsed("keep-last", _parse_count),
            keep_business_days=parsed("keep-business-days", _parse_count),
            business_days=parsed("business-days", _parse_weekdays) or MONDAY_TO_FRIDAY,
            holidays=holidays,
            keep_daily=parsed("keep-daily", _parse_count),
            keep_weekly=parsed("keep-weekly", _parse_count),
            keep_monthly=parsed("keep-monthly", _parse_count),
            keep_quarterly=parsed("keep-quarterly", _parse_count),
            keep_yearly=parsed("keep-yearly", _parse_count),
            fiscal_year_start=parsed("fiscal-year-start", _parse_month) or 1,
            keep_within=parsed("keep-within", _parse_duration),
            keep_tags=tags if tags is not None else frozenset(),
            max_backups=parsed("max-backups", _parse_max_backups),
        )
    except ValueError as error:  # every field is checked above; this is a second line only
        raise UsageError(f"invalid retention policy: {error}") from None


def _whole_number(setting: PolicySetting, what: str) -> int:
    value = setting.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
        return int(value.strip())
    raise UsageError(f"{setting.origin}: {value!r} is not {what}")


def _parse_count(setting: PolicySetting) -> int:
    if isinstance(setting.value, str) and setting.value.strip().lower() == "unlimited":
        return UNLIMITED
    count = _whole_number(setting, "a whole number or 'unlimited'")
    if count < 0:
        raise UsageError(f"{setting.origin}: {count} is negative; use 0 or more, or 'unlimited'")
    return count


def _parse_max_backups(setting: PolicySetting) -> int:
    count = _whole_number(setting, "a whole number")
    if count < 1:
        raise UsageError(f"{setting.origin}: must be at least 1, not {count}")
    return count


def _parse_month(setting: PolicySetting) -> int:
    month = _whole_number(setting, "a month number 1-12")
    if not 1 <= month <= 12:
        raise UsageError(f"{setting.origin}: {month} is not a month number 1-12")
    return month


def _parse_duration(setting: PolicySetting) -> Duration:
    if not isinstance(setting.value, str):
        raise UsageError(f"{setting.origin}: {setting.value!r} is not a duration such as 14d")
    try:
        return Duration.parse(setting.value)
    except ValueError as error:
        raise UsageError(f"{setting.origin}: {error}") from None


def _string_list(setting: PolicySetting) -> list[str]:
    """A comma-separated string or a TOML array of strings, as a list of stripped strings."""
    value = setting.value
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return [part.strip() for part in value]
    raise UsageError(f"{setting.origin}: {value!r} is not a list of names")


def _parse_weekdays(setting: PolicySetting) -> frozenset[int]:
    days: set[int] = set()
    for part in _string_list(setting):
        if not part:
            continue
        first, dash, last = part.partition("-")
        start = parse_weekday(first.strip(), setting.origin)
        end = parse_weekday(last.strip(), setting.origin) if dash else start
        if end < start:
            raise UsageError(f"{setting.origin}: range {part!r} runs backwards; write it mon-fri")
        days.update(range(start, end + 1))
    if not days:
        raise UsageError(f"{setting.origin}: names no weekday")
    return frozenset(days)


def _parse_date(text: str, origin: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{origin}: {text!r} is not an ISO date such as 2026-12-25") from None


def _parse_holidays(setting: PolicySetting) -> frozenset[date]:
    """A policy file's `holidays = [...]`: ISO date strings or TOML date literals."""
    value = setting.value
    if not isinstance(value, list):
        raise UsageError(
            f'{setting.origin}: expected a list of dates such as ["2026-12-25"] '
            "(use holidays-file for a file of dates)"
        )
    days: set[date] = set()
    for item in value:
        if isinstance(item, date) and not hasattr(item, "hour"):  # TOML local date literal
            days.add(item)
        elif isinstance(item, str):
            days.add(_parse_date(item.strip(), setting.origin))
        else:
            raise UsageError(f"{setting.origin}: {item!r} is not a date such as 2026-12-25")
    return frozenset(days)


def _parse_holidays_file(setting: PolicySetting) -> frozenset[date]:
    if not isinstance(setting.value, str):
        raise UsageError(f"{setting.origin}: expected a file name")
    return _read_holidays_file(setting.base_dir / setting.value, setting.origin)


def _read_holidays_file(path: Path, origin: str) -> frozenset[date]:
    """One ISO date a line; `#` starts a comment; blank lines are ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{origin}: cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{origin}: {path} is not a UTF-8 text file") from None
    days: set[date] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            days.add(_parse_date(entry, f"{path}, line {number}"))
    return frozenset(days)


def _parse_tags(setting: PolicySetting) -> frozenset[str]:
    tags = _string_list(setting) if not isinstance(setting.value, str) else [setting.value]
    if any(not tag for tag in tags):
        raise UsageError(f"{setting.origin}: a tag cannot be empty")
    return frozenset(tags)
