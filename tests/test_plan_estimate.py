"""The forecast's estimators (`dedupe.plan.projection`): nightly level, trend and survival tail,
each on a
synthetic history whose answer is computed by hand in the test."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dedupe.plan.projection import History, PackUsage, estimate_groups, estimate_nightly, forecast
from dedupe.retention import UNLIMITED, Policy, SnapshotInfo

TZ = timezone(timedelta(hours=1))
MB = 1_000_000
FOREVER = 10_000


Lifetimes = dict[int, float]


def nightly_history(
    added: list[float],
    lifetimes: Lifetimes | list[Lifetimes] | None = None,
    days: list[int] | None = None,
) -> History:
    """Snapshot i at 23:00 on day `days[i]` (default i) adds `added[i]` bytes in its own pack.
    `lifetimes` (one for all nights or one per night) maps L to the share of a night's bytes
    that the next L snapshots still reference (L = FOREVER: every later one); the default is
    everything forever."""
    per_night = lifetimes if isinstance(lifetimes, list) else [lifetimes or {FOREVER: 1.0}]
    days = days or list(range(len(added)))
    first = datetime(2026, 3, 1, 23, 0, tzinfo=TZ)
    snaps = tuple(
        SnapshotInfo(id=f"{i:04x}", time=first + timedelta(days=d), host="srv", paths=("/d",))
        for i, d in enumerate(days)
    )
    packs = []
    for i, size in enumerate(added):
        groups = []
        for life, share in per_night[min(i, len(per_night) - 1)].items():
            last = min(i + life, len(added) - 1)
            mask = ((1 << (last + 1)) - 1) & ~((1 << i) - 1)
            groups.append((mask, round(size * share)))
        packs.append(PackUsage(sum(b for _m, b in groups), tuple(groups)))
    return History(snaps, tuple(round(a) for a in added), tuple(packs), other_bytes=0)


def close(actual: float, expected: float, within: float = 0.10) -> bool:
    return abs(actual - expected) <= within * expected


def test_level_is_the_mean_so_big_nights_count():
    """Sixteen 1 MB nights and four 6 MB ones (a big scan now and then): the drive holds their
    sum, 2 MB a night, though the median night is 1 MB."""
    added = [50 * MB] + [6 * MB if i % 5 == 0 else 1 * MB for i in range(1, 21)]
    history = nightly_history(added)
    (estimate,) = estimate_groups(history, TZ)
    assert estimate.nightly_bytes == pytest.approx(2 * MB)
    assert estimate.nightly_trend == 0
    result = forecast(history, Policy(), 100, tz=TZ)
    assert close(result.final.stored_bytes, history.stored_bytes + 100 * 2 * MB)


def test_a_freak_night_counts_at_the_outlier_bound():
    # 0.9 and 1.1 MB alternate; night 10 brings 100 MB once (a reorganised folder).
    added = [1.1 * MB if i % 2 == 0 else 0.9 * MB for i in range(1, 21)]
    added[9] = 100 * MB
    nightly = estimate_nightly(list(range(-19, 1)), added)
    # median 1.0 MB, MAD 0.1 MB: bound 1.0 + 5 * 1.4826 * 0.1 = 1.7413 MB.
    assert nightly.capped == 1
    assert nightly.level == pytest.approx((10 * 0.9 + 9 * 1.1 + 1.7413) * MB / 20, rel=1e-3)
    assert nightly.trend == 0


def test_a_rising_trend_goes_on_linearly():
    """Night i adds 1 + 0.1 i MB: tomorrow (night 20) adds 3.0 MB, night 19 + d adds 2.9 + 0.1 d."""
    added = [50 * MB] + [(1 + 0.1 * i) * MB for i in range(1, 20)]
    history = nightly_history(added)
    (estimate,) = estimate_groups(history, TZ)
    assert estimate.nightly_trend == pytest.approx(0.1 * MB)
    assert estimate.nightly_bytes == pytest.approx(2.9 * MB)
    result = forecast(history, Policy(), 100, tz=TZ)
    expected = sum((2.9 + 0.1 * d) * MB for d in range(1, 101))  # 795 MB
    assert close(result.final.stored_bytes - history.stored_bytes, expected)


def test_a_noisy_rise_still_counts_but_noise_alone_does_not():
    days = list(range(-19, 1))
    wobble = [0.4 if i % 2 else -0.4 for i in range(20)]
    rising = [(2 + 0.05 * d + w) * MB for d, w in zip(days, wobble, strict=True)]
    assert estimate_nightly(days, rising).trend == pytest.approx(0.05 * MB, rel=0.1)
    flat = [(2 + w) * MB for w in wobble]
    assert estimate_nightly(days, flat).trend == 0
    assert estimate_nightly(days, flat).level == pytest.approx(2 * MB)
    falling = [(2 - 0.05 * d) * MB for d in days]  # not extrapolated: the safe side
    assert estimate_nightly(days, falling).trend == 0
    assert estimate_nightly(days, falling).level == pytest.approx((2 + 0.05 * 9.5) * MB)
    # Four nights are too few to call any trend.
    assert estimate_nightly([-3, -2, -1, 0], [1 * MB, 2 * MB, 3 * MB, 4 * MB]).trend == 0


def power_law_lifetimes(b: float, horizon: int = 60) -> dict[int, float]:
    """Shares by lifetime such that S(k) = (1 + k) ** -b exactly up to `horizon`."""

    def s(k: int) -> float:
        return (1 + k) ** -b

    shares = {life: s(life) - s(life + 1) for life in range(horizon)}
    shares[FOREVER] = s(horizon)
    return shares


def test_survival_beyond_the_measured_days_follows_the_fitted_power_law():
    history = nightly_history([0] + [1 * MB] * 19, power_law_lifetimes(0.5))
    (estimate,) = estimate_groups(history, TZ)
    assert len(estimate.survival) - 1 == 18  # night 1 to night 19
    assert estimate.tail_exponent == pytest.approx(0.5, rel=0.02)
    assert estimate.survive(7) == pytest.approx(8**-0.5, rel=0.01)
    # Beyond: S(18) * (19 / 101) ** 0.5 = 101 ** -0.5 ~ 0.0995, where a flat tail said 0.229.
    assert close(estimate.survive(100), 101**-0.5)
    assert close(estimate.survive_given(18, 82), (19 / 101) ** 0.5)


def test_a_rolling_window_frees_old_data_along_the_tail():
    """keep-last 7 for a year, gc freeing everything unused. On day 365 the snapshots of days
    359..365 are kept: night n < 359 keeps S(359 - n) of its megabyte, the last 7 nights all of
    theirs, and what today's data of age a still holds, S(a + 359)."""

    def s(k: int) -> float:
        return (1 + k) ** -0.5

    history = nightly_history([0] + [1 * MB] * 19, power_law_lifetimes(0.5))
    result = forecast(history, Policy(keep_last=7), 365, tz=TZ, max_unused=0.0)
    future = 7 + sum(s(k) for k in range(1, 359))
    existing = sum(s(a + 359) for a in range(19))
    assert close(result.final.stored_bytes, (future + existing) * MB)  # ~43 MB
    assert result.final.stored_bytes < 60 * MB  # a flat tail (S = 0.229 beyond 18) said ~93


def test_survival_counts_only_data_of_one_night():
    """Days 0..6, then days 20..26 (the days between forgotten). Day 20's first data, 10 MB, is
    what two weeks left behind, and all of it lives on; it says nothing about one night's data,
    half of which lives one day. Counted, it would make S(1) (10 * 0.5 + 10) / 20 = 0.75."""
    days = [*range(7), *range(20, 27)]
    added = [10 * MB] + [1 * MB] * 6 + [10 * MB] + [1 * MB] * 6
    one_night = {0: 0.5, FOREVER: 0.5}
    lifetimes = [one_night] * 7 + [{FOREVER: 1.0}] + [one_night] * 6
    (estimate,) = estimate_groups(nightly_history(added, lifetimes, days), TZ)
    assert estimate.survive(1) == pytest.approx(0.5, rel=0.01)


# --- shared data: what every kept snapshot references is never forecast away (issue 15) -------

MiB = 1 << 20
PRACTICE = Policy(keep_business_days=10, keep_monthly=UNLIMITED)


def history_of(nights: list[list[tuple[int, int]]]) -> History:
    """Snapshot i at 23:00 on Mon 2 March 2026 + i days; night i stores its parts, each
    (bytes, L): the next L snapshots reference it too (0: only that night's, FOREVER: every
    later one). A night's parts share one pack."""
    first = datetime(2026, 3, 2, 23, 0, tzinfo=TZ)
    n = len(nights)
    snaps = tuple(
        SnapshotInfo(id=f"{i:04x}", time=first + timedelta(days=i), host="srv", paths=("/d",))
        for i in range(n)
    )
    packs = []
    for i, parts in enumerate(nights):
        groups = []
        for size, life in parts:
            last = min(i + life, n - 1)
            groups.append((((1 << (last + 1)) - 1) & ~((1 << i) - 1), size))
        packs.append(PackUsage(sum(b for _m, b in groups), tuple(groups)))
    added = tuple(sum(b for b, _l in parts) for parts in nights)
    return History(snaps, added, tuple(packs), other_bytes=0)


def base_and_gone_nightly(nights: int = 20) -> History:
    """The issue's history: a 30 MiB base folder, and each night 1 MiB gone the next night."""
    return history_of([[(30 * MiB, FOREVER), (MiB, 0)]] + [[(MiB, 0)]] * (nights - 1))


def test_the_base_every_snapshot_shares_is_never_dropped():
    """Issue 15: the first version forecast 23 MiB after a year, less than the 30 MiB base that
    every kept snapshot references. Exactly: each day holds the base plus 1 MiB per kept
    snapshot (its own night), plus night 0's 1 MiB, which gc leaves inside the base's pack
    (1/31 unused is below the 10 % max-unused)."""
    history = base_and_gone_nightly()
    (estimate,) = estimate_groups(history, TZ)
    assert estimate.survive(1) == 0.0  # a night's data is gone the next night...
    assert estimate.standing_measured and estimate.stand(1) == 1.0  # ...the base is not
    assert estimate.stand(1000) == 1.0
    result = forecast(history, PRACTICE, 365, tz=TZ)
    for point in result.series[1:]:
        referenced = 30 * MiB + point.snapshots * MiB
        assert point.stored_bytes == referenced + MiB
    assert result.final.snapshots == 23  # 10 business days, 12 month ends, March's
    assert result.final.stored_bytes == 54 * MiB
    strict = forecast(history, PRACTICE, 365, tz=TZ, max_unused=0.0)
    assert all(p.stored_bytes == 30 * MiB + p.snapshots * MiB for p in strict.series[1:])


def test_a_growing_dump_keeps_every_row():
    """A dump that grows by 1 MiB of rows a night, all of which every later dump holds, plus a
    0.1 MiB chunk at its end that only that night's dump has: after day d the drive holds the
    30 MiB base, every row added (19 + d MiB) and one end chunk per kept snapshot."""
    tail = MiB // 10
    history = history_of([[(30 * MiB, FOREVER), (tail, 0)]] + [[(MiB, FOREVER), (tail, 0)]] * 19)
    result = forecast(history, PRACTICE, 365, tz=TZ, max_unused=0.0)
    for day, point in enumerate(result.series):
        assert point.stored_bytes == 30 * MiB + (19 + day) * MiB + point.snapshots * tail


def test_scans_kept_for_years_grow_linearly_under_any_policy():
    """100 MiB of old scans and 2 MiB of new scans a night, never deleted: the policy frees
    nothing, so every day adds exactly 2 MiB."""
    history = history_of([[(100 * MiB, FOREVER)]] + [[(2 * MiB, FOREVER)]] * 19)
    for policy in (PRACTICE, Policy(keep_last=3), Policy()):
        result = forecast(history, policy, 730, tz=TZ)
        for day, point in enumerate(result.series):
            assert point.stored_bytes == 100 * MiB + (19 + day) * 2 * MiB


def test_slowly_changing_base_thins_out_at_its_own_pace():
    """A base of 40 files of 1 MiB; each night one file is rewritten (the old version goes, the
    new one stays until its own rewrite 40 nights on). A snapshot shares 39 files with older
    ones; k days later k of them have been rewritten: R(k) = (39 - k) / 39, where the nightly
    curve (a new version lives 40 nights) says 1."""
    nights = [[(MiB, i) for i in range(40)]]  # file i is rewritten on night i + 1
    nights += [[(MiB, 39)] for _night in range(1, 20)]
    history = history_of(nights)
    (estimate,) = estimate_groups(history, TZ)
    for k in (1, 5, 18):
        assert estimate.stand(k) == pytest.approx((39 - k) / 39)
    assert estimate.survive(18) == 1.0
    # Whatever the tail, it never falls below zero and never rises.
    assert 0 <= estimate.stand(400) <= estimate.stand(18)
