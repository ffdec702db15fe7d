"""The contract's POLICY flags and `--policy FILE` (TOML), turned into a `retention.Policy`.

Used by every command that takes a policy (`forget`, `plan`):

    add_policy_arguments(parser)          # while building the parser
    policy = policy_from_args(namespace)  # after parsing; raises UsageError (exit 2)

Flags are stored raw and validated here, in one place, so a bad value reads the same whether it
came from the command line or from the file. A policy file holds the same names as the flags
without the dashes in front (`keep-business-days = 10`, `business-days = ["tue", "sat"]`,
`holidays = ["2026-12-25"]`, `holidays-file = "holidays.txt"`, `fiscal-year-start = 7`, ...);
a flag given on the command line replaces the file's value for that setting.

`parse_max_unused` reads gc's `--max-unused`, which `plan` takes too (the gc setting it
forecasts with), so both commands accept and refuse the same values.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from dedupe.errors import UsageError
from dedupe.retention import MONDAY_TO_FRIDAY, UNLIMITED, WEEKDAY_NAMES, Duration, Policy

_COUNT_SETTINGS = (
    "keep-last",
    "keep-business-days",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-quarterly",
    "keep-yearly",
)
_OTHER_SETTINGS = (
    "business-days",
    "holidays",
    "fiscal-year-start",
    "keep-within",
    "keep-tag",
    "max-backups",
)
_FILE_ONLY_SETTINGS = ("holidays-file",)
_WHOLE_NUMBER = re.compile(r"[+-]?\d+")
_WEEKDAY_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the POLICY flags to `parser` (all default to None: "not given")."""
    group = parser.add_argument_group("retention policy")
    helps = {
        "keep-last": "keep the N newest snapshots",
        "keep-business-days": "keep the newest snapshot of each of the N most recent business days",
        "keep-daily": "keep the newest snapshot of each of the N most recent days",
        "keep-weekly": "keep the newest snapshot of each of the N most recent ISO weeks",
        "keep-monthly": "keep the newest snapshot of each of the N most recent months",
        "keep-quarterly": "keep the newest snapshot of each of the N most recent fiscal quarters",
        "keep-yearly": "keep the newest snapshot of each of the N most recent fiscal years",
    }
    for name in _COUNT_SETTINGS:
        group.add_argument(f"--{name}", metavar="N", help=f"{helps[name]} (N or 'unlimited')")
    group.add_argument(
        "--business-days",
        metavar="DAYS",
        help="weekdays counted as business days, e.g. mon,tue,wed or tue-sat (default mon-fri)",
    )
    group.add_argument(
        "--holidays",
        metavar="FILE",
        help="file of dates that are not business days: one ISO date a line, # comments",
    )
    group.add_argument(
        "--fiscal-year-start",
        metavar="M",
        help="first month (1-12) of the fiscal year, for quarters and years (default 1)",
    )
    group.add_argument(
        "--keep-within",
        metavar="DURATION",
        help="keep every snapshot within DURATION of the newest (14d, 2w, 6m, 1y, 12h)",
    )
    group.add_argument(
        "--keep-tag",
        metavar="TAG",
        action="append",
        help="keep snapshots carrying TAG (repeatable)",
    )
    group.add_argument(
        "--max-backups",
        metavar="N",
        help="after the keep rules, remove the oldest until N remain per group (held ones stay)",
    )
    group.add_argument(
        "--policy",
        metavar="FILE",
        help="read the policy from a TOML file; flags given here override its settings",
    )


@dataclass(frozen=True)
class _Setting:
    """A raw value and where it came from, so that an error can point at it."""

    value: Any
    origin: str  # "--keep-daily" or "policy.toml: keep-daily"
    base_dir: Path  # relative file names are resolved against this


def policy_from_args(namespace: argparse.Namespace) -> Policy:
    """Build the Policy from parsed POLICY flags and the `--policy` file (UsageError if bad).

    Missing attributes count as "not given", so a command may add only some of the flags.
    """
    settings: dict[str, _Setting] = {}
    policy_file = getattr(namespace, "policy", None)
    if policy_file is not None:
        settings.update(_read_policy_file(Path(policy_file)))
    cwd = Path.cwd()
    for name in (*_COUNT_SETTINGS, *_OTHER_SETTINGS):
        value = getattr(namespace, name.replace("-", "_"), None)
        if value is None:
            continue
        if name == "holidays":
            # --holidays names a file; it replaces both of the policy file's holiday settings.
            settings.pop("holidays", None)
            settings["holidays-file"] = _Setting(value, "--holidays", cwd)
        else:
            settings[name] = _Setting(value, f"--{name}", cwd)
    return _build_policy(settings)


def parse_max_unused(text: str) -> float:
    """--max-unused: '10', '10%', '0', '2.5' -> a fraction of 1."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise UsageError(f"invalid --max-unused {text!r}: give a percentage, e.g. 10") from None
    if not 0.0 <= value <= 100.0:
        raise UsageError("--max-unused must be between 0 and 100 (percent)")
    return value / 100.0


def read_toml_file(path: Path, what: str) -> dict[str, Any]:
    """The table of a TOML file, or UsageError (exit 2) naming `what` and the file: it cannot
    be read, is not UTF-8 (the line of the first bad byte), or is not TOML. `what` is e.g.
    "policy file" or "profile"; the profile loader uses this too."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UsageError(
            f"{what} {path} is not UTF-8 text (line {line}): save it as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{what} {path} is not valid TOML: {error}") from None


def _read_policy_file(path: Path) -> dict[str, _Setting]:
    table = read_toml_file(path, "policy file")
    known = (*_COUNT_SETTINGS, *_OTHER_SETTINGS, *_FILE_ONLY_SETTINGS)
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise UsageError(
            f"policy file {path}: unknown setting {', '.join(map(repr, unknown))}; "
            f"known settings: {', '.join(known)}"
        )
    return {name: _Setting(value, f"{path}: {name}", path.parent) for name, value in table.items()}


def _build_policy(settings: dict[str, _Setting]) -> Policy:
    def parsed(name: str, parse: Callable[[_Setting], Any]) -> Any:
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


def _whole_number(setting: _Setting, what: str) -> int:
    value = setting.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
        return int(value.strip())
    raise UsageError(f"{setting.origin}: {value!r} is not {what}")


def _parse_count(setting: _Setting) -> int:
    if isinstance(setting.value, str) and setting.value.strip().lower() == "unlimited":
        return UNLIMITED
    count = _whole_number(setting, "a whole number or 'unlimited'")
    if count < 0:
        raise UsageError(f"{setting.origin}: {count} is negative; use 0 or more, or 'unlimited'")
    return count


def _parse_max_backups(setting: _Setting) -> int:
    count = _whole_number(setting, "a whole number")
    if count < 1:
        raise UsageError(f"{setting.origin}: must be at least 1, not {count}")
    return count


def _parse_month(setting: _Setting) -> int:
    month = _whole_number(setting, "a month number 1-12")
    if not 1 <= month <= 12:
        raise UsageError(f"{setting.origin}: {month} is not a month number 1-12")
    return month


def _parse_duration(setting: _Setting) -> Duration:
    if not isinstance(setting.value, str):
        raise UsageError(f"{setting.origin}: {setting.value!r} is not a duration such as 14d")
    try:
        return Duration.parse(setting.value)
    except ValueError as error:
        raise UsageError(f"{setting.origin}: {error}") from None


def _string_list(setting: _Setting) -> list[str]:
    """A comma-separated string or a TOML array of strings, as a list of stripped strings."""
    value = setting.value
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return [part.strip() for part in value]
    raise UsageError(f"{setting.origin}: {value!r} is not a list of names")


def _weekday(name: str, origin: str) -> int:
    key = name.lower()
    for number, short in enumerate(WEEKDAY_NAMES):
        if key == short or key == _WEEKDAY_FULL[number]:
            return number
    raise UsageError(f"{origin}: {name!r} is not a weekday; use mon, tue, wed, thu, fri, sat, sun")


def _parse_weekdays(setting: _Setting) -> frozenset[int]:
    days: set[int] = set()
    for part in _string_list(setting):
        if not part:
            continue
        first, dash, last = part.partition("-")
        start = _weekday(first.strip(), setting.origin)
        end = _weekday(last.strip(), setting.origin) if dash else start
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


def _parse_holidays(setting: _Setting) -> frozenset[date]:
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


def _parse_holidays_file(setting: _Setting) -> frozenset[date]:
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


def _parse_tags(setting: _Setting) -> frozenset[str]:
    tags = _string_list(setting) if not isinstance(setting.value, str) else [setting.value]
    if any(not tag for tag in tags):
        raise UsageError(f"{setting.origin}: a tag cannot be empty")
    return frozenset(tags)
