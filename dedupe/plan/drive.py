"""The drive question in plain words: parse a drive's size, find the day a forecast fills it, and
say so in one sentence an office manager can act on.

Pure functions (no I/O, no clock), so `dedupe plan` and a later `dedupe run` / `dedupe status`
(the low-disk-days warning) give the same answer from the same forecast:

- `parse_drive_size("2T")` -> 2_000_000_000_000: decimal units, as drives are labelled.
- `days_until_full(sizes, drive_bytes)` -> the first day index whose size reaches the drive, or
  None; `full_date(series, drive_bytes)` -> that day's date.
- `headline(...)` -> the one sentence `plan` prints first.

Units: everything a person reads about plan is decimal (kB, MB, GB, TB: 1 GB = 10^9 bytes), as
drives are sold, so the sentence, the statistics and the chart name the same number the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Protocol

from dedupe.retention import UNLIMITED, Policy
from dedupe.units import format_bytes

_DECIMAL = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]?)(I?)(B?)", re.IGNORECASE)


class SizeError(ValueError):
    """A drive size that cannot be read; the message says what to write instead."""


def parse_drive_size(text: str) -> int:
    """Bytes of a drive size as labelled: `500G`, `2T`, `1.5T`, `100M`, `2TB`, `4000000000`.

    Decimal like the label on the box (2T = 2,000,000,000,000 bytes); `TiB`, `GiB` are binary,
    for a size read off a tool that counts in powers of two."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise SizeError(f"cannot read the drive size {text!r}: write it as on the label, e.g. 2T")
    number, prefix, binary, _b = match.groups()
    prefix = prefix.upper()
    if binary and not prefix:
        raise SizeError(f"cannot read the drive size {text!r}: write it as on the label, e.g. 2T")
    unit = _BINARY[prefix] if binary else _DECIMAL[prefix]
    value = math.floor(Decimal(number) * unit)  # exact: 2.3M is 2,300,000 bytes, not one less
    if value <= 0:
        raise SizeError(f"the drive size {text!r} must be more than 0 bytes")
    return value


def days_until_full(sizes: Sequence[int], drive_bytes: int) -> int | None:
    """The first day index d with `sizes[d] >= drive_bytes` (0: already full today), or None
    when the drive holds every day of the forecast. `sizes[d]` is the forecast size on day d
    (`[p.stored_bytes for p in forecast.series]`): this is what a low-disk warning compares
    with its threshold of days."""
    if drive_bytes <= 0:
        raise ValueError("a drive holds more than 0 bytes")
    for day, size in enumerate(sizes):
        if size >= drive_bytes:
            return day
    return None


class _Point(Protocol):
    @property
    def day(self) -> date: ...

    @property
    def stored_bytes(self) -> int: ...


def full_date(series: Sequence[_Point], drive_bytes: int) -> date | None:
    """The date of `days_until_full` on a forecast's series, or None."""
    day = days_until_full([p.stored_bytes for p in series], drive_bytes)
    return None if day is None else series[day].day


def month_words(day: date) -> str:
    return f"{day:%B} {day.year}"


def policy_words(policy: Policy, pruned: bool = True) -> str:
    """The policy as an office says it: "10 business days + month, quarter and year ends"."""
    if not pruned:
        return "keep every backup"
    parts: list[str] = []

    def count(n: int, one: str, many: str) -> str:
        return many if n == UNLIMITED else f"{n} {one if n == 1 else many}"

    if policy.keep_last is not None:
        parts.append(f"the last {count(policy.keep_last, 'backup', 'backups')}")
    if policy.keep_business_days is not None:
        parts.append(count(policy.keep_business_days, "business day", "business days"))
    if policy.keep_daily is not None:
        parts.append(count(policy.keep_daily, "day", "every day"))
    if policy.keep_weekly is not None:
        parts.append(count(policy.keep_weekly, "week", "every week"))
    ends = [
        (name, n)
        for name, n in (
            ("month", policy.keep_monthly),
            ("quarter", policy.keep_quarterly),
            ("year", policy.keep_yearly),
        )
        if n is not None
    ]
    if ends and all(n == UNLIMITED for _name, n in ends):
        names = [name for name, _n in ends]
        joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        parts.append(f"{joined} ends")
    else:
        parts.extend(count(n, f"{name} end", f"{name} ends") for name, n in ends)
    if policy.keep_within is not None:
        parts.append(f"everything within {policy.keep_within}")
    parts.extend(f"backups tagged {tag}" for tag in sorted(policy.keep_tags))
    text = " + ".join(parts) if parts else "no rule"
    if policy.max_backups is not None:
        text += f", at most {policy.max_backups} backups"
    return text


def _a(size: str) -> str:
    """The size with its article, as it is read aloud: "a 2 TB", "an 8 TB", "an 18 TB"."""
    spoken_vowel = size.startswith("8") or re.match(r"1[18](?:[ .]|$)", size) is not None
    return f"{'an' if spoken_vowel else 'a'} {size}"


def headline(
    *,
    today_bytes: int,
    peak_bytes: int,
    peak_day: date,
    days: int,
    recommended_bytes: int,
    drive_bytes: int | None = None,
    full_day: date | None = None,
    start: date | None = None,
    early_full_day: date | None = None,
) -> str:
    """The one sentence `plan` prints first.

    Without a drive: what to buy and when the peak comes. With one: the date it fills (and the
    earliest date within the likely range, when earlier), or that it does not within the
    forecast, with the peak as a share of it; when the forecast fits but the top of the likely
    range (the measured replay errors) reaches the drive, both, and the drive that covers it."""
    peak = f"about {format_bytes(peak_bytes)} at their peak, around {month_words(peak_day)}"
    if drive_bytes is None:
        buy = _a(format_bytes(recommended_bytes))
        return f"Buy at least {buy} drive: the backups need {peak}."
    drive = format_bytes(drive_bytes)
    article = _a(drive).split(" ", 1)[0].capitalize()
    if full_day is not None and start is not None and full_day <= start:
        return (
            f"{article} {drive} drive is already too small: the backups hold "
            f"{format_bytes(today_bytes)} today; buy at least "
            f"{_a(format_bytes(recommended_bytes))} drive."
        )
    if full_day is not None:
        early = ""
        if early_full_day is not None and early_full_day < full_day:
            early = (
                f" (as early as {early_full_day.isoformat()} if the data grows as it did on "
                "replayed histories)"
            )
        return (
            f"{article} {drive} drive fills around {month_words(full_day)} "
            f"({full_day.isoformat()}){early}; buy at least "
            f"{_a(format_bytes(recommended_bytes))} drive for the next {days} days."
        )
    percent = 100 * peak_bytes / drive_bytes
    share = "less than 1 %" if percent < 1 else f"{round(percent)} %"
    if early_full_day is not None:
        # The forecast fits, its measured error does not: say both, and what covers it.
        return (
            f"{article} {drive} drive holds the forecast for {days} days ({peak}, {share} of "
            f"it), but could fill as early as {early_full_day.isoformat()} if the data grows "
            f"as it did on replayed histories; buy at least "
            f"{_a(format_bytes(recommended_bytes))} drive."
        )
    return (
        f"{article} {drive} drive does not fill within {days} days: the backups need {peak}, "
        f"{share} of it."
    )
