"""Calendar arithmetic for the retention policy: instants, local days, spans and fiscal periods.

Every question the rules ask of a time goes through here: the UTC instant of any stored time
(clamped, so a manifest holding year 1 at +14:00 is just the oldest snapshot), its local time in
a zone (None: the system's, judged per instant so summer and winter time are both right), a
keep-within span counted in calendar steps, and the fiscal year and quarter of a day. Pure: no
clock, no I/O.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Final

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


def fiscal_year(day: date, start_month: int) -> int:
    """The fiscal year containing `day`, named by the calendar year in which it ends."""
    return day.year + 1 if start_month != 1 and day.month >= start_month else day.year


def fiscal_quarter(day: date, start_month: int) -> tuple[int, int]:
    """(fiscal year, quarter 1..4), quarters counted from the fiscal year's first month."""
    return fiscal_year(day, start_month), (day.month - start_month) % 12 // 3 + 1
