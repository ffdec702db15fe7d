"""The margin on a forecast, measured: how much larger the real repository grew than `plan` said,
on replayed histories. Pure constants and arithmetic (no I/O).

A forecast extends what the history shows; what it cannot show (data that starts to grow
faster, a run of big nights, a rising share of data kept for good) makes it too low, and an
under-estimate is the worst error `plan` can make: the office buys a drive that fills. So the
drive to buy and the top of the likely range are the forecast times the largest under-estimate
measured on replays, not a guessed percentage. `MEASURED` comes from
`python -m benchmarks.plan_replay_errors` on `benchmarks/size_my_drive.py --keep --keep-at`
runs; docs/PLAN.md lists the runs and their figures.

The error grows with the nights ahead, so the margin does too. `MEASURED` holds, for forecasts
checked up to H nights ahead, the largest ratio of a real size (or the real peak so far) to the
forecast's (`high`) and the smallest ratio of a real size to the forecast's (`low`, below 1
where a forecast was too high). A day d nights ahead takes the row of the first H >= d, so
every measured day is covered by its own row (a straight line between rows would cut under the
worst day inside them); today's size is measured, factor 1. Beyond the longest horizon nothing
was checked: the margin goes on growing at the last row's average pace per night,
`1 + (high - 1) * d / H`, and the words of `plan` say so.
"""

from __future__ import annotations

MEASURED: tuple[tuple[int, float, float], ...] = (
    (5, 1.069, 0.982),
    (10, 1.103, 0.948),
    (20, 1.201, 0.948),
    (30, 1.218, 0.948),
    (40, 1.292, 0.948),
    (50, 1.349, 0.948),
    (60, 1.421, 0.948),
    (70, 1.538, 0.948),
    (80, 1.629, 0.948),
    (90, 1.729, 0.948),
    (100, 1.83, 0.948),
    (110, 1.891, 0.948),
    (120, 1.991, 0.948),
    (130, 1.991, 0.948),
)
"""(nights ahead H, highest real / forecast up to H, lowest real / forecast up to H), from
`python -m benchmarks.plan_replay_errors` on five `size_my_drive` runs of the benchmark corpus
under the practice policy (30M seeds 1 and 4, 60M seeds 3 and 5, 100M seed 2; forecasts after
nights 20 to 120, 23 in all; docs/PLAN.md), rounded outwards. Every row past 60 nights comes
from forecasts made after 20 to 40 nights."""
REPLAYED_FORECASTS = 23
"""How many replayed forecasts `MEASURED` was taken over."""
MEASURED_AHEAD = MEASURED[-1][0]
"""The longest horizon the replays checked (nights ahead)."""


Table = tuple[tuple[int, float, float], ...]


def _factor(ahead: int, column: int, table: Table) -> float:
    if ahead <= 0:
        return 1.0
    for row in table:
        if ahead <= row[0]:
            return row[column]
    last = table[-1]
    return 1.0 + (last[column] - 1.0) * ahead / last[0]


def high(ahead: int, table: Table | None = None) -> float:
    """The factor on the forecast `ahead` nights on that covers every under-estimate measured
    that far ahead: the top of the likely range and the drive to buy. At least 1. `table`
    replaces `MEASURED` (the benchmark checks a table taken on other replays)."""
    return max(1.0, _factor(ahead, 1, MEASURED if table is None else table))


def low(ahead: int, table: Table | None = None) -> float:
    """The factor for the bottom of the likely range (the largest over-estimate measured that
    far ahead); at most 1, and never below a tenth."""
    return min(1.0, max(0.1, _factor(ahead, 2, MEASURED if table is None else table)))


def widen(
    sizes: tuple[int, ...], band: tuple[tuple[int, ...], tuple[int, ...]]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The likely range: the wider of the nightly-average band and the measured replay errors
    around the forecast `sizes` (index = nights ahead, 0 = today, which is measured)."""
    rows = list(enumerate(zip(sizes, *band, strict=True)))
    lows = tuple(min(lo, round(size * low(d))) for d, (size, lo, _hi) in rows)
    highs = tuple(max(hi, round(size * high(d))) for d, (size, _lo, hi) in rows)
    return lows, highs
