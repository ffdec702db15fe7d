"""The forecast core (`dedupe.plan.projection`) and the drive words (`dedupe.plan.drive`) on
synthetic histories with hand-computed answers."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import pytest

from dedupe.plan import margin
from dedupe.plan.drive import (
    SizeError,
    days_until_full,
    full_date,
    headline,
    parse_drive_size,
    policy_words,
)
from dedupe.plan.projection import (
    History,
    PackUsage,
    drive_size,
    estimate_groups,
    forecast,
    forecast_band,
    past_sizes,
)
from dedupe.retention import UNLIMITED, Policy, SnapshotInfo

TZ = timezone(timedelta(hours=1))
MB = 1_000_000
PRACTICE = Policy(
    keep_business_days=10,
    keep_monthly=UNLIMITED,
    keep_quarterly=UNLIMITED,
    keep_yearly=UNLIMITED,
)


def synthetic(nights: int, base: int, persistent: int, transient: int) -> History:
    """`nights` nightly snapshots at 23:00 ending Tue 2026-03-31. Night 0 stores `base`
    (referenced by every snapshot); each later night adds `persistent` bytes every later
    snapshot still references and `transient` bytes only that night's snapshot references
    (a rewritten dump). Each night's data is its own pack."""
    last = datetime(2026, 3, 31, 23, 0, tzinfo=TZ)
    snaps = tuple(
        SnapshotInfo(
            id=f"{i:04x}", time=last - timedelta(days=nights - 1 - i), host="srv", paths=("/data",)
        )
        for i in range(nights)
    )
    everyone = (1 << nights) - 1
    packs = [PackUsage(base, ((everyone, base),))]
    for i in range(1, nights):
        from_i = everyone & ~((1 << i) - 1)
        packs.append(PackUsage(persistent + transient, ((from_i, persistent), (1 << i, transient))))
    added = (base, *([persistent + transient] * (nights - 1)))
    return History(snaps, added, tuple(packs), other_bytes=0)


def close(actual: float, expected: float, within: float = 0.10) -> bool:
    return abs(actual - expected) <= within * expected


def test_estimates_mean_and_survival():
    history = synthetic(20, 50 * MB, 2 * MB, 8 * MB)
    (estimate,) = estimate_groups(history, TZ)
    assert estimate.nightly_bytes == 10 * MB
    assert estimate.nights_used == 19  # the base snapshot is not a night's addition
    assert estimate.survival_measured
    assert estimate.survive(0) == 1.0
    assert estimate.survive(1) == pytest.approx(0.2)
    assert estimate.survive(400) == pytest.approx(0.2)


def test_keep_everything_grows_linearly():
    history = synthetic(20, 50 * MB, 2 * MB, 8 * MB)
    today = history.stored_bytes
    result = forecast(history, Policy(), 365, tz=TZ)
    assert not result.pruned
    assert result.series[0].stored_bytes == today
    assert close(result.final.stored_bytes, today + 365 * 10 * MB)
    assert close(result.series[100].stored_bytes, today + 100 * 10 * MB)
    assert result.peak == result.final
    assert result.final.snapshots == 20 + 365


def test_business_days_and_month_ends_level_off():
    """Only transient data: the size settles at base + one night per kept snapshot."""
    nightly = 5 * MB
    history = synthetic(20, 100 * MB, 0, nightly)
    result = forecast(history, PRACTICE, 365, tz=TZ)
    # By hand: 10 business days + 12 earlier month ends (Apr 2026 .. Mar 2027, the newest month
    # end is also a business day) + March 2026's month end from the history = 23 snapshots.
    kept = 10 + 12 + 1
    assert result.final.snapshots == pytest.approx(kept, abs=1)
    assert close(result.final.stored_bytes, 100 * MB + kept * nightly)
    # Levelled off: the last 100 days add about one month end's worth per month, not 100 nights.
    assert result.final.stored_bytes - result.series[265].stored_bytes < 5 * nightly
    everything = forecast(history, Policy(), 365, tz=TZ)
    assert result.final.stored_bytes < everything.final.stored_bytes / 5


def test_persistent_data_is_kept_under_pruning():
    history = synthetic(20, 100 * MB, 1 * MB, 4 * MB)
    result = forecast(history, PRACTICE, 365, tz=TZ)
    kept = 10 + 12 + 1
    expected = 100 * MB + 19 * MB + 365 * MB + kept * 4 * MB
    assert close(result.final.stored_bytes, expected)


def test_growth_compounds_monthly():
    history = synthetic(20, 50 * MB, 2 * MB, 8 * MB)
    result = forecast(history, Policy(), 365, tz=TZ, growth_per_month=0.05)
    added = sum(10 * MB * 1.05 ** (d / (365.25 / 12)) for d in range(1, 366))
    assert close(result.final.stored_bytes, history.stored_bytes + added)
    # One year of 5 % a month: the last night adds 1.05 ** 12 ~ 1.8 times the first.
    series = result.series
    last_night = series[-1].stored_bytes - series[-2].stored_bytes
    assert last_night == pytest.approx(10 * MB * 1.05 ** (365 / (365.25 / 12)), rel=0.01)


def test_max_unused_leaves_small_garbage_in_place():
    """A night whose forgettable share is below max-unused is not repacked: nothing is freed."""
    history = synthetic(20, 100 * MB, 19 * MB, 1 * MB)  # 5 % transient
    lax = forecast(history, PRACTICE, 120, tz=TZ, max_unused=0.10)
    strict = forecast(history, PRACTICE, 120, tz=TZ, max_unused=0.0)
    assert close(lax.final.stored_bytes, history.stored_bytes + 120 * 20 * MB, 0.01)
    assert strict.final.stored_bytes < lax.final.stored_bytes - 80 * MB


def test_existing_snapshots_are_forgotten_exactly():
    """Today's history is pruned on the first night: weekend nights' unique data goes."""
    history = synthetic(20, 100 * MB, 0, 5 * MB)
    result = forecast(history, PRACTICE, 1, tz=TZ)
    # Kept after night 1: Wed 1 April (business day 1, April's month end) back to Thu 19 March
    # (business day 10); March's month end, the 31st, is one of them: 10 snapshots.
    assert result.series[1].snapshots == 10
    assert result.series[1].stored_bytes == 100 * MB + 10 * 5 * MB


def test_drive_size_and_margin():
    assert drive_size(1) == 1000**3
    assert drive_size(300 * 1000**3) == 500 * 1000**3
    assert drive_size(30_000 * 1000**3) == 30_000 * 1000**3
    history = synthetic(5, 100 * MB, 0, 1 * MB)
    result = forecast(history, Policy(keep_last=3), 10, tz=TZ, margin=1.3)
    assert result.drive_bytes == drive_size(result.peak.stored_bytes * 1.3)


def test_the_measured_margin_grows_with_the_nights_ahead():
    """Without a margin given, day d's size counts times `margin.high(d)`: a flat forecast needs
    its last day's size times the margin measured that far ahead, and the likely range's top is
    that product on every day."""
    history = synthetic(5, 100 * MB, 0, 1 * MB)
    result = forecast(history, Policy(keep_last=3), 100, tz=TZ)
    flat = result.series[1].stored_bytes
    assert all(p.stored_bytes == flat for p in result.series[1:])
    point, factor = result.needed
    assert point.stored_bytes == flat and factor == margin.high(100) >= margin.high(30) > 1
    assert result.needed_bytes == math.ceil(flat * margin.high(100))
    assert result.drive_bytes == drive_size(result.needed_bytes)
    sizes = tuple(p.stored_bytes for p in result.series)
    low, high = margin.widen(sizes, forecast_band(history, Policy(keep_last=3), 100, tz=TZ))
    assert low[0] == high[0] == sizes[0]
    assert high[100] == round(flat * margin.high(100))
    assert low[100] == min(round(flat * margin.low(100)), flat)


def test_the_margin_covers_every_measured_horizon_and_grows_beyond():
    """The factors pass through the measured rows, never shrink with the nights ahead, and go
    on beyond the longest horizon at the last row's average pace per night."""
    for ahead, high, low in margin.MEASURED:
        assert margin.high(ahead) == pytest.approx(max(1.0, high))
        assert margin.low(ahead) == pytest.approx(min(1.0, low))
    highs = [margin.high(d) for d in range(0, 3 * margin.MEASURED_AHEAD)]
    assert highs[0] == 1.0 and all(a <= b for a, b in zip(highs, highs[1:], strict=False))
    last, top, _low = margin.MEASURED[-1]
    assert margin.high(2 * last) == pytest.approx(1 + 2 * (top - 1))


def test_forecast_is_pure_and_validates():
    history = synthetic(10, 10 * MB, 1 * MB, 1 * MB)
    assert forecast(history, PRACTICE, 30, tz=TZ) == forecast(history, PRACTICE, 30, tz=TZ)
    with pytest.raises(ValueError):
        forecast(history, PRACTICE, 0, tz=TZ)


# --- the drive: sizes as labelled, the day it fills, the sentence (issue 15) ---------------------


def test_drive_sizes_are_read_as_labelled():
    assert parse_drive_size("500G") == 500 * 10**9
    assert parse_drive_size("2T") == 2 * 10**12
    assert parse_drive_size("1.5T") == 1_500 * 10**9
    assert parse_drive_size("100M") == 100 * 10**6
    assert parse_drive_size("2.3M") == 2_300_000  # float arithmetic would say 2,299,999
    assert parse_drive_size("2 TB") == parse_drive_size("2tb") == 2 * 10**12
    assert parse_drive_size("1TiB") == 2**40
    assert parse_drive_size("4000000000") == 4 * 10**9
    for bad in ("", "big", "2X", "-1T", "0G", "1.2.3T", "iB"):
        with pytest.raises(SizeError, match="drive size"):
            parse_drive_size(bad)


def test_days_until_full_is_the_first_day_at_the_drive_size():
    sizes = [10, 20, 30, 25, 40]
    assert days_until_full(sizes, 30) == 2
    assert days_until_full(sizes, 31) == 4
    assert days_until_full(sizes, 41) is None
    assert days_until_full(sizes, 5) == 0  # already full today
    with pytest.raises(ValueError):
        days_until_full(sizes, 0)
    history = synthetic(20, 50 * MB, 2 * MB, 0)  # 2 MB a night, kept for good
    result = forecast(history, Policy(), 365, tz=TZ)
    today = history.stored_bytes
    # Night d holds today + 2 MB * d: a drive of today + 201 MB fills on night 101.
    assert full_date(result.series, today + 201 * MB) == result.series[101].day
    assert full_date(result.series, today + 731 * MB) is None


def test_the_sentence_an_office_manager_reads():
    peak = date(2027, 10, 5)
    common = {"today_bytes": 300 * 10**9, "peak_bytes": 620 * 10**9, "peak_day": peak}
    common |= {"days": 365, "recommended_bytes": 1000 * 10**9, "start": date(2026, 12, 5)}
    assert headline(**common) == (
        "Buy at least a 1 TB drive: the backups need about 620 GB at their peak, "
        "around October 2027."
    )
    assert headline(**common, drive_bytes=2 * 10**12) == (
        "A 2 TB drive does not fill within 365 days: the backups need about 620 GB at their "
        "peak, around October 2027, 31 % of it."
    )
    risky = headline(**common, drive_bytes=800 * 10**9, early_full_day=date(2027, 6, 1))
    assert risky == (
        "An 800 GB drive holds the forecast for 365 days (about 620 GB at their peak, around "
        "October 2027, 78 % of it), but could fill as early as 2027-06-01 if the data grows as "
        "it did on replayed histories; buy at least a 1 TB drive."
    )
    fills = headline(
        **common,
        drive_bytes=500 * 10**9,
        full_day=date(2027, 3, 14),
        early_full_day=date(2027, 2, 1),
    )
    assert fills == (
        "A 500 GB drive fills around March 2027 (2027-03-14) (as early as 2027-02-01 if the "
        "data grows as it did on replayed histories); buy at least a 1 TB drive for the next "
        "365 days."
    )
    full = headline(**common, drive_bytes=250 * 10**9, full_day=date(2026, 12, 5))
    assert full.startswith("A 250 GB drive is already too small: the backups hold 300 GB today")


def test_policy_in_words():
    assert policy_words(PRACTICE) == "10 business days + month, quarter and year ends"
    assert (
        policy_words(Policy(keep_last=7, keep_monthly=12)) == "the last 7 backups + 12 month ends"
    )
    assert policy_words(Policy(keep_daily=1, max_backups=30)) == "1 day, at most 30 backups"
    assert policy_words(Policy(), pruned=False) == "keep every backup"


def test_peak_is_a_forecast_day_even_when_today_is_larger():
    """A history never pruned: today holds 20 nights of 5 MB dumps, the policy keeps 3."""
    history = synthetic(20, 100 * MB, 0, 5 * MB)
    result = forecast(history, Policy(keep_last=3), 30, tz=TZ)
    assert result.series[0].stored_bytes == 100 * MB + 19 * 5 * MB
    assert result.peak.stored_bytes == 100 * MB + 3 * 5 * MB
    assert result.peak.day == result.series[1].day


def test_band_spans_the_uncertainty_of_the_nightly_average():
    """Nights of 1 and 3 MB alternating, kept for good: mean 2 MB, standard error
    sd / sqrt(n); the band ends add 2 MB -/+ 1.645 SE a night."""
    last = datetime(2026, 3, 31, 23, 0, tzinfo=TZ)
    nights = 21
    added = [10 * MB] + [(1 if i % 2 else 3) * MB for i in range(1, nights)]
    snaps = tuple(
        SnapshotInfo(
            id=f"{i:04x}", time=last - timedelta(days=nights - 1 - i), host="s", paths=("/d",)
        )
        for i in range(nights)
    )
    everyone = (1 << nights) - 1
    packs = tuple(PackUsage(a, ((everyone & ~((1 << i) - 1), a),)) for i, a in enumerate(added))
    history = History(snaps, tuple(added), packs, other_bytes=0)
    low, high = forecast_band(history, Policy(), 100, tz=TZ)
    central = forecast(history, Policy(), 100, tz=TZ)
    error = (20 / 19) ** 0.5 * MB / 20**0.5  # sample sd of 1, 3, 1, 3, ... is sqrt(20/19) MB
    today = history.stored_bytes
    assert low[0] == high[0] == central.series[0].stored_bytes == today
    assert low[-1] == pytest.approx(today + 100 * (2 * MB - 1.645 * error), rel=1e-6)
    assert high[-1] == pytest.approx(today + 100 * (2 * MB + 1.645 * error), rel=1e-6)
    sizes = [p.stored_bytes for p in central.series]
    assert all(lo <= size <= hi for lo, size, hi in zip(low, sizes, high, strict=True))


def test_past_sizes_tell_the_history_night_by_night():
    history = synthetic(5, 50 * MB, 2 * MB, 8 * MB)
    past = past_sizes(history, TZ)
    assert [d for d, _b in past] == [
        date(2026, 3, 27),
        date(2026, 3, 28),
        date(2026, 3, 29),
        date(2026, 3, 30),
        date(2026, 3, 31),
    ]
    assert [b for _d, b in past] == [50 * MB + n * 10 * MB for n in range(5)]
    assert past[-1][1] == history.stored_bytes
