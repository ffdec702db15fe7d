"""`--time ISO8601`: the time a snapshot (or a whole `dedupe run`) records instead of now, for
imports and tests."""

from __future__ import annotations

from datetime import UTC, datetime

from dedupe.errors import UsageError

# Snapshot times outside these years cannot be converted to UTC and back everywhere.
MIN_YEAR = 1970
MAX_YEAR = 9999


def parse_time(text: str | None) -> datetime:
    """The snapshot time: given (a naive time is local), or now; always with an offset.

    A given time must lie in 1970..9999 as given, in UTC and in local time: retention and plan
    convert every snapshot time both ways, and `0001-01-01T00:00:00+14:00` (UTC year 0) once
    made every later `forget` and `plan` end in an OverflowError.
    """
    if text is None:
        return datetime.now().astimezone()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid --time {text!r}: use ISO 8601, e.g. 2026-05-29T22:00") from None
    years: tuple[int, ...]
    try:
        when = when.astimezone() if when.tzinfo is None else when
        years = (when.year, when.astimezone(UTC).year, when.astimezone().year)
        when.timestamp()
    except (OverflowError, ValueError, OSError):
        years = (0,)
    if not all(MIN_YEAR <= year <= MAX_YEAR for year in years):
        raise UsageError(
            f"invalid --time {text!r}: the time must lie between the years {MIN_YEAR} and "
            f"{MAX_YEAR} (in UTC and in local time too)"
        )
    return when
