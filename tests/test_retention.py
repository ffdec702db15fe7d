"""Unit tests of the retention policy over constructed calendars (no repository, no clock)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from dedupe.retention import (
    UNLIMITED,
    Decision,
    Duration,
    Policy,
    ReasonKind,
    SnapshotInfo,
    apply_policy,
    decisions_to_json,
    fiscal_quarter,
    fiscal_year,
)

BERLIN = ZoneInfo("Europe/Berlin")


def snap(
    when: str,
    *,
    tz: tzinfo = BERLIN,
    host: str = "pc",
    paths: tuple[str, ...] = ("/srv",),
    tags: tuple[str, ...] = (),
    held: bool = False,
    hold_reason: str | None = None,
    snapshot_id: str | None = None,
) -> SnapshotInfo:
    """A snapshot at local wall time `when` (ISO) in `tz`; the id defaults to the time text."""
    moment = datetime.fromisoformat(when).replace(tzinfo=tz)
    return SnapshotInfo(
        id=snapshot_id or f"{host}{paths}{when}",
        time=moment,
        host=host,
        paths=paths,
        tags=frozenset(tags),
        held=held,
        hold_reason=hold_reason,
    )


def nightly(first: date, last: date, *, hour: int = 23, weekdays: set[int] | None = None, **kw):
    """One snapshot a night from `first` to `last` inclusive (optionally only on some weekdays)."""
    result = []
    day = first
    while day <= last:
        if weekdays is None or day.weekday() in weekdays:
            result.append(snap(f"{day.isoformat()}T{hour:02d}:00", **kw))
        day += timedelta(days=1)
    return result


def kept_days(decisions: list[Decision], tz: tzinfo = BERLIN) -> list[str]:
    """Local dates of the kept snapshots, newest first."""
    return [d.snapshot.time.astimezone(tz).date().isoformat() for d in decisions if d.keep]


def reasons_by_day(decisions: list[Decision], tz: tzinfo = BERLIN) -> dict[str, tuple[str, ...]]:
    return {d.snapshot.time.astimezone(tz).date().isoformat(): d.texts for d in decisions if d.keep}


# --- keep-last, daily, several snapshots in a day -------------------------------------------


def test_keep_last_keeps_the_n_newest_with_their_rank() -> None:
    snapshots = nightly(date(2026, 5, 1), date(2026, 5, 10))
    decisions = apply_policy(snapshots, Policy(keep_last=3), BERLIN)
    assert kept_days(decisions) == ["2026-05-10", "2026-05-09", "2026-05-08"]
    assert decisions[0].texts == ("last 1",) and decisions[2].texts == ("last 3",)
    assert [d.keep for d in decisions[3:]] == [False] * 7


def test_several_snapshots_in_one_day_the_newest_wins() -> None:
    snapshots = [snap("2026-05-04T08:00"), snap("2026-05-04T23:10"), snap("2026-05-04T12:00")]
    snapshots += [snap("2026-05-03T09:00"), snap("2026-05-03T10:00")]
    decisions = apply_policy(snapshots, Policy(keep_daily=7), BERLIN)
    kept = [d.snapshot.time.strftime("%d %H:%M") for d in decisions if d.keep]
    assert kept == ["04 23:10", "03 10:00"]
    assert decisions[0].texts == ("daily 2026-05-04",)


def test_business_day_rule_keeps_newest_of_each_business_day_and_ignores_weekends() -> None:
    snapshots = nightly(date(2026, 4, 27), date(2026, 5, 10))  # Mon 27 Apr .. Sun 10 May
    snapshots.append(snap("2026-05-08T09:00"))  # an extra morning backup on Friday
    decisions = apply_policy(snapshots, Policy(keep_business_days=3), BERLIN)
    assert kept_days(decisions) == ["2026-05-08", "2026-05-07", "2026-05-06"]
    friday = [d for d in decisions if d.snapshot.time.date() == date(2026, 5, 8)]
    assert [d.keep for d in friday] == [True, False]  # the 23:00 one, not the 09:00 one
    assert reasons_by_day(decisions)["2026-05-06"] == ("business day 3 of 3",)
    assert decisions[0].kinds == ()  # Sunday 10 May is not a business day


def test_holiday_on_a_business_day_is_not_counted() -> None:
    snapshots = nightly(date(2026, 3, 28), date(2026, 4, 10))
    good_friday = date(2026, 4, 3)
    with_holiday = Policy(keep_business_days=6, holidays=frozenset({good_friday}))
    decisions = apply_policy(snapshots, with_holiday, BERLIN)
    assert kept_days(decisions) == [
        "2026-04-10",
        "2026-04-09",
        "2026-04-08",
        "2026-04-07",
        "2026-04-06",
        "2026-04-02",
    ]
    without = apply_policy(snapshots, Policy(keep_business_days=6), BERLIN)
    assert "2026-04-03" in kept_days(without) and "2026-04-02" not in kept_days(without)


def test_practice_open_tuesday_to_saturday() -> None:
    snapshots = nightly(date(2026, 5, 4), date(2026, 5, 17))  # Mon 4 .. Sun 17 May
    policy = Policy(keep_business_days=6, business_days=frozenset({1, 2, 3, 4, 5}))
    decisions = apply_policy(snapshots, policy, BERLIN)
    assert kept_days(decisions) == [
        "2026-05-16",  # Saturday counts
        "2026-05-15",
        "2026-05-14",
        "2026-05-13",
        "2026-05-12",
        "2026-05-09",  # Monday 11 May does not count; the rule reaches back to Saturday
    ]


# --- month, quarter and fiscal-year ends ----------------------------------------------------


def test_month_end_on_a_weekend_with_weekday_only_backups_is_the_last_friday() -> None:
    # January 2026 ends on a Saturday, February 2026 on a Saturday, May 2026 on a Sunday.
    snapshots = nightly(date(2026, 1, 1), date(2026, 6, 3), weekdays={0, 1, 2, 3, 4})
    decisions = apply_policy(snapshots, Policy(keep_monthly=UNLIMITED), BERLIN)
    assert kept_days(decisions) == [
        "2026-06-03",
        "2026-05-29",
        "2026-04-30",
        "2026-03-31",
        "2026-02-27",
        "2026-01-30",
    ]
    assert reasons_by_day(decisions)["2026-05-29"] == ("month end 2026-05",)


def test_month_end_on_a_weekend_with_nightly_backups_is_the_weekend_day() -> None:
    snapshots = nightly(date(2026, 1, 25), date(2026, 2, 3))
    decisions = apply_policy(snapshots, Policy(keep_monthly=2), BERLIN)
    assert kept_days(decisions) == ["2026-02-03", "2026-01-31"]


@pytest.mark.parametrize(
    ("start", "day", "expected"),
    [
        (1, date(2025, 12, 31), (2025, 4)),
        (1, date(2026, 1, 1), (2026, 1)),
        (1, date(2026, 3, 31), (2026, 1)),
        (1, date(2026, 4, 1), (2026, 2)),
        (7, date(2026, 6, 30), (2026, 4)),
        (7, date(2026, 7, 1), (2027, 1)),
        (7, date(2026, 9, 30), (2027, 1)),
        (7, date(2026, 10, 1), (2027, 2)),
        (7, date(2027, 1, 1), (2027, 3)),
        (10, date(2026, 9, 30), (2026, 4)),
        (10, date(2026, 10, 1), (2027, 1)),
        (10, date(2026, 12, 31), (2027, 1)),
        (10, date(2027, 1, 1), (2027, 2)),
        (4, date(2026, 3, 31), (2026, 4)),
        (4, date(2026, 4, 1), (2027, 1)),
    ],
)
def test_fiscal_quarters_and_years_are_named_by_the_year_they_end(
    start: int, day: date, expected: tuple[int, int]
) -> None:
    assert fiscal_quarter(day, start) == expected
    assert fiscal_year(day, start) == expected[0]


@pytest.mark.parametrize(
    ("start", "quarter_ends", "year_ends"),
    [
        (
            1,
            {"2026-12-31": "FY2026 Q4", "2026-09-30": "FY2026 Q3", "2026-06-30": "FY2026 Q2"},
            {"2026-12-31": "FY2026", "2025-12-31": "FY2025"},
        ),
        (
            7,
            {"2026-12-31": "FY2027 Q2", "2026-09-30": "FY2027 Q1", "2026-06-30": "FY2026 Q4"},
            {"2026-12-31": "FY2027", "2026-06-30": "FY2026"},
        ),
        (
            10,
            {"2026-12-31": "FY2027 Q1", "2026-09-30": "FY2026 Q4", "2026-06-30": "FY2026 Q3"},
            {"2026-12-31": "FY2027", "2026-09-30": "FY2026"},
        ),
    ],
)
def test_quarter_and_fiscal_year_ends_follow_the_fiscal_start(
    start: int, quarter_ends: dict[str, str], year_ends: dict[str, str]
) -> None:
    snapshots = nightly(date(2025, 5, 1), date(2026, 12, 31))
    policy = Policy(keep_quarterly=3, keep_yearly=2, fiscal_year_start=start)
    reasons = reasons_by_day(apply_policy(snapshots, policy, BERLIN))
    quarter = {
        day: text.removeprefix("quarter end ")
        for day, texts in reasons.items()
        for text in texts
        if text.startswith("quarter end")
    }
    assert {day: quarter[day] for day in quarter_ends} == quarter_ends
    assert sum("quarter end" in t for ts in reasons.values() for t in ts) == 3
    for day, fy in year_ends.items():
        assert f"fiscal year end {fy}" in reasons[day]
    assert sum(t.startswith("fiscal year end") for ts in reasons.values() for t in ts) == 2


def test_leap_day_is_the_month_end_of_february() -> None:
    snapshots = nightly(date(2028, 2, 20), date(2028, 3, 2))
    decisions = apply_policy(snapshots, Policy(keep_monthly=2, keep_daily=1), BERLIN)
    assert kept_days(decisions) == ["2028-03-02", "2028-02-29"]
    assert reasons_by_day(decisions)["2028-02-29"] == ("month end 2028-02",)


def test_keep_within_one_month_from_the_end_of_march_reaches_back_to_the_leap_day() -> None:
    newest = datetime(2028, 3, 31, 12, tzinfo=BERLIN)
    assert Duration.parse("1m").start_before(newest, BERLIN) == datetime(
        2028, 2, 29, 12, tzinfo=BERLIN
    ).astimezone(UTC)
    from_leap_day = datetime(2028, 2, 29, 12, tzinfo=BERLIN)
    start = Duration.parse("1y").start_before(from_leap_day, BERLIN)
    assert start == datetime(2027, 2, 28, 12, tzinfo=BERLIN).astimezone(UTC)


# --- gaps -----------------------------------------------------------------------------------


def test_a_gap_of_weeks_never_deletes_the_newest_backups() -> None:
    before_gap = nightly(date(2026, 3, 2), date(2026, 3, 20), weekdays={0, 1, 2, 3, 4})
    after_gap = [snap("2026-04-20T23:00"), snap("2026-04-21T23:00")]  # four weeks later
    policy = Policy(keep_business_days=5, keep_weekly=3)
    decisions = apply_policy(before_gap + after_gap, policy, BERLIN)
    assert kept_days(decisions) == [
        "2026-04-21",
        "2026-04-20",
        "2026-03-20",
        "2026-03-19",
        "2026-03-18",
        "2026-03-13",  # the third week that has backups, not the third calendar week
    ]
    assert reasons_by_day(decisions)["2026-03-13"] == ("week 2026-W11",)


def test_iso_weeks_span_the_new_year() -> None:
    # 2026 has 53 ISO weeks; Friday 1 January 2027 still belongs to 2026-W53.
    snapshots = [snap("2026-12-28T23:00"), snap("2027-01-01T23:00"), snap("2027-01-04T23:00")]
    decisions = apply_policy(snapshots, Policy(keep_weekly=UNLIMITED), BERLIN)
    assert reasons_by_day(decisions) == {
        "2027-01-04": ("week 2027-W01",),
        "2027-01-01": ("week 2026-W53",),
    }


# --- time zones -----------------------------------------------------------------------------


def test_a_late_utc_snapshot_is_the_next_day_in_berlin() -> None:
    late = snap("2026-05-04T23:30", tz=UTC, snapshot_id="late")
    early = snap("2026-05-04T20:00", tz=UTC, snapshot_id="early")
    in_berlin = apply_policy([late, early], Policy(keep_daily=5), BERLIN)
    assert [(d.snapshot.id, d.texts) for d in in_berlin] == [
        ("late", ("daily 2026-05-05",)),
        ("early", ("daily 2026-05-04",)),
    ]
    in_utc = apply_policy([late, early], Policy(keep_daily=5), UTC)
    assert [d.keep for d in in_utc] == [True, False]


def test_month_end_and_business_day_are_judged_in_local_time() -> None:
    # 23:30 UTC on Friday 30 January is Saturday 31 January in Berlin.
    friday_night = snap("2026-01-30T23:30", tz=UTC, snapshot_id="friday-night")
    sunday = snap("2026-02-01T10:00", tz=UTC, snapshot_id="sunday")
    thursday = snap("2026-01-29T12:00", tz=UTC, snapshot_id="thursday")
    snapshots = [friday_night, sunday, thursday]
    business = apply_policy(snapshots, Policy(keep_business_days=1), BERLIN)
    assert [d.snapshot.id for d in business if d.keep] == ["thursday"]
    monthly = apply_policy(snapshots, Policy(keep_monthly=2), BERLIN)
    assert {d.snapshot.id: d.texts for d in monthly if d.keep} == {
        "sunday": ("month end 2026-02",),
        "friday-night": ("month end 2026-01",),
    }


def test_tz_none_is_the_system_zone_with_its_summer_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        # 22:30 UTC is 23:30 in winter but 00:30 the next day in summer (CEST, +02:00).
        winter = snap("2026-01-14T22:30", tz=UTC, snapshot_id="winter")
        summer = snap("2026-07-14T22:30", tz=UTC, snapshot_id="summer")
        decisions = apply_policy([winter, summer], Policy(keep_daily=2), None)
        assert [d.texts for d in decisions] == [("daily 2026-07-15",), ("daily 2026-01-14",)]
        newest = datetime(2026, 3, 31, 12, tzinfo=UTC)  # 14:00 CEST
        start = Duration.parse("1m").start_before(newest, None)
        assert start == datetime(2026, 2, 28, 13, tzinfo=UTC)  # 14:00 CET
    finally:
        monkeypatch.undo()
        time.tzset()


def test_order_is_by_instant_even_across_offsets() -> None:
    # 01:00 in Berlin (+01:00) is 00:00 UTC: half an hour after 23:30 UTC the evening before.
    a = SnapshotInfo("a", datetime(2026, 1, 10, 1, 0, tzinfo=BERLIN), "pc", ("/srv",))
    b = SnapshotInfo("b", datetime(2026, 1, 9, 23, 30, tzinfo=UTC), "pc", ("/srv",))
    decisions = apply_policy([b, a], Policy(keep_last=1), BERLIN)
    assert [(d.snapshot.id, d.keep) for d in decisions] == [("a", True), ("b", False)]


def test_order_is_by_instant_in_the_repeated_hour_of_a_dst_change() -> None:
    # 25 October 2026: Berlin's 02:00-03:00 happens twice. 02:10 the second time (fold=1,
    # 01:10 UTC) is newer than 02:30 the first time (00:30 UTC), though its wall clock is earlier.
    first = SnapshotInfo("first", datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN), "pc", ("/srv",))
    second_time = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1)
    second = SnapshotInfo("second", second_time, "pc", ("/srv",))
    decisions = apply_policy([first, second], Policy(keep_last=1), BERLIN)
    assert [(d.snapshot.id, d.keep) for d in decisions] == [("second", True), ("first", False)]


# --- holds, max-backups, unlimited, keep-within, keep-tag -----------------------------------


def test_held_snapshots_are_kept_with_their_reason_even_without_rules() -> None:
    snapshots = nightly(date(2026, 5, 1), date(2026, 5, 5))
    snapshots[1] = snap("2026-05-02T23:00", held=True, hold_reason="legal hold")
    snapshots[3] = snap("2026-05-04T23:00", held=True)
    decisions = apply_policy(snapshots, Policy(), BERLIN)
    assert reasons_by_day(decisions) == {
        "2026-05-04": ("held",),
        "2026-05-02": ("held: legal hold",),
    }
    assert all(d.kinds == ("held",) for d in decisions if d.keep)


def test_max_backups_removes_the_oldest_but_never_a_held_one() -> None:
    snapshots = nightly(date(2026, 5, 1), date(2026, 5, 8))
    snapshots[0] = snap("2026-05-01T23:00", held=True, hold_reason="audit")
    decisions = apply_policy(snapshots, Policy(keep_daily=UNLIMITED, max_backups=4), BERLIN)
    assert kept_days(decisions) == ["2026-05-08", "2026-05-07", "2026-05-06", "2026-05-01"]
    removed = {d.snapshot.time.date().isoformat(): d for d in decisions if not d.keep}
    assert set(removed) == {"2026-05-05", "2026-05-04", "2026-05-03", "2026-05-02"}
    assert removed["2026-05-02"].kinds == ("max backups",)
    assert removed["2026-05-02"].texts == ("over max-backups 4 (was: daily 2026-05-02)",)


def test_max_backups_with_more_holds_than_the_cap_keeps_every_hold() -> None:
    snapshots = [snap(f"2026-05-0{day}T23:00", held=True) for day in range(1, 4)]
    snapshots += [snap("2026-05-05T23:00"), snap("2026-05-06T23:00")]
    decisions = apply_policy(snapshots, Policy(keep_last=5, max_backups=2), BERLIN)
    assert [d.keep for d in decisions] == [False, False, True, True, True]


def test_max_backups_counts_only_what_the_rules_keep() -> None:
    snapshots = nightly(date(2026, 5, 1), date(2026, 5, 10))
    decisions = apply_policy(snapshots, Policy(keep_last=3, max_backups=5), BERLIN)
    assert kept_days(decisions) == ["2026-05-10", "2026-05-09", "2026-05-08"]
    assert all(d.reasons == () for d in decisions if not d.keep)


def test_unlimited_keeps_every_bucket_that_has_a_snapshot() -> None:
    snapshots = nightly(date(2023, 1, 1), date(2026, 5, 3), hour=2)
    monthly = apply_policy(snapshots, Policy(keep_monthly=UNLIMITED), BERLIN)
    assert sum(d.keep for d in monthly) == 12 * 3 + 5
    assert "month end 2023-01" in reasons_by_day(monthly)["2023-01-31"]
    everything = apply_policy(snapshots, Policy(keep_last=UNLIMITED), BERLIN)
    assert all(d.keep for d in everything)
    assert everything[-1].texts == (f"last {len(snapshots)}",)


def test_zero_keeps_nothing_and_is_not_a_keep_rule() -> None:
    policy = Policy(keep_last=0, keep_monthly=0)
    assert not policy.has_keep_rule()
    assert not any(
        d.keep for d in apply_policy(nightly(date(2026, 5, 1), date(2026, 5, 3)), policy, BERLIN)
    )


def test_keep_within_is_measured_from_the_newest_snapshot_of_the_group() -> None:
    # An old group (backups stopped in 2020) still keeps its last 14 days: no clock involved.
    snapshots = nightly(date(2020, 3, 1), date(2020, 3, 31))
    decisions = apply_policy(snapshots, Policy(keep_within=Duration.parse("14d")), BERLIN)
    days = kept_days(decisions)
    assert days[0] == "2020-03-31" and days[-1] == "2020-03-17"  # boundary is inclusive
    assert len(days) == 15
    assert decisions[0].texts == ("within 14d",)


def test_keep_within_months_is_calendar_months() -> None:
    snapshots = nightly(date(2026, 1, 1), date(2026, 7, 15))
    decisions = apply_policy(snapshots, Policy(keep_within=Duration.parse("6m")), BERLIN)
    assert kept_days(decisions)[-1] == "2026-01-15"


def test_keep_within_hours_is_exact_across_a_dst_change() -> None:
    # 29 March 2026: Berlin skips 02:00-03:00, so 00:00 and 04:00 local are 3 hours apart.
    snapshots = [snap("2026-03-29T04:00"), snap("2026-03-29T00:00"), snap("2026-03-28T23:59")]
    decisions = apply_policy(snapshots, Policy(keep_within=Duration.parse("3h")), BERLIN)
    assert [d.keep for d in decisions] == [True, True, False]


def test_keep_tag_keeps_tagged_snapshots_only() -> None:
    snapshots = [
        snap("2026-05-01T23:00", tags=("monthly-archive", "db")),
        snap("2026-05-02T23:00", tags=("db",)),
        snap("2026-05-03T23:00"),
    ]
    decisions = apply_policy(snapshots, Policy(keep_tags=frozenset({"monthly-archive"})), BERLIN)
    assert reasons_by_day(decisions) == {"2026-05-01": ("tag monthly-archive",)}


# --- grouping, output, validation -----------------------------------------------------------


def test_policy_applies_within_each_host_and_paths_group() -> None:
    snapshots = [
        snap("2026-05-01T23:00", host="pc"),
        snap("2026-05-02T23:00", host="pc"),
        snap("2026-05-01T23:00", host="server"),
        snap("2026-05-01T22:00", paths=("/srv", "/etc")),
        snap("2026-05-01T21:00", paths=("/etc", "/srv")),  # same set of paths, same group
        snap("2026-05-01T20:00", paths=("db.sql",)),
    ]
    decisions = apply_policy(snapshots, Policy(keep_last=1), BERLIN)
    kept = {(d.snapshot.host, d.snapshot.time.hour) for d in decisions if d.keep}
    assert kept == {("pc", 23), ("server", 23), ("pc", 22), ("pc", 20)}
    assert [d.snapshot.group_key for d in decisions] == sorted(
        d.snapshot.group_key for d in decisions
    )


def test_reasons_are_combined_and_the_json_matches_the_contract() -> None:
    snapshots = nightly(date(2026, 3, 25), date(2026, 4, 1))
    snapshots[0] = snap("2026-03-25T23:00", held=True, hold_reason="legal hold")
    policy = Policy(keep_business_days=2, keep_monthly=2, keep_quarterly=2, keep_yearly=1)
    decisions = apply_policy(snapshots, policy, BERLIN)
    march_31 = reasons_by_day(decisions)["2026-03-31"]
    assert march_31 == (
        "business day 2 of 2",
        "month end 2026-03",
        "quarter end FY2026 Q1",
    )
    document = decisions_to_json(decisions)
    assert set(document) == {"keep", "remove"}
    assert len(document["keep"]) + len(document["remove"]) == len(snapshots)
    first = document["keep"][0]
    assert first["id"] == decisions[0].snapshot.id
    assert first["time"] == "2026-04-01T23:00:00+02:00"
    assert first["reasons"] == ["business day", "month end", "quarter end", "fiscal year end"]
    held = [item for item in document["keep"] if item["reasons"] == ["held"]]
    assert held[0]["details"] == ["held: legal hold"]
    assert all(set(item) >= {"id", "time"} for item in document["remove"])
    assert ReasonKind.BUSINESS_DAY == "business day"


def test_has_keep_rule() -> None:
    assert not Policy().has_keep_rule()
    assert not Policy(max_backups=5, holidays=frozenset({date(2026, 1, 1)})).has_keep_rule()
    assert Policy(keep_last=1).has_keep_rule()
    assert Policy(keep_yearly=UNLIMITED).has_keep_rule()
    assert Policy(keep_within=Duration(days=1)).has_keep_rule()
    assert Policy(keep_tags=frozenset({"x"})).has_keep_rule()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"keep_last": -2},
        {"keep_daily": True},
        {"max_backups": 0},
        {"max_backups": UNLIMITED},
        {"fiscal_year_start": 13},
        {"fiscal_year_start": 0},
        {"business_days": frozenset()},
        {"business_days": frozenset({7})},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_a_snapshot_time_without_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        SnapshotInfo("x", datetime(2026, 5, 1, 12), "pc", ("/srv",))


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("14d", Duration(days=14), "14d"),
        ("2w", Duration(days=14), "14d"),
        ("6m", Duration(months=6), "6m"),
        ("1y", Duration(years=1), "1y"),
        ("12h", Duration(hours=12), "12h"),
        (" 1Y6M ", Duration(years=1, months=6), "1y6m"),
        ("1w2d", Duration(days=9), "9d"),
    ],
)
def test_duration_parse(text: str, expected: Duration, canonical: str) -> None:
    assert Duration.parse(text) == expected
    assert str(expected) == canonical


@pytest.mark.parametrize("text", ["", "14", "d", "1x", "0d", "1d1d", "-3d", "1.5d", "1 d"])
def test_duration_parse_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        Duration.parse(text)


def test_worked_example_from_the_issue() -> None:
    """81 nightly snapshots, fiscal year from April, Good Friday a holiday (docs/RETENTION.md)."""
    snapshots = nightly(date(2026, 1, 20), date(2026, 4, 10))
    assert len(snapshots) == 81
    policy = Policy(
        keep_business_days=10,
        holidays=frozenset({date(2026, 4, 3)}),
        keep_monthly=UNLIMITED,
        keep_quarterly=UNLIMITED,
        keep_yearly=UNLIMITED,
        fiscal_year_start=4,
    )
    reasons = reasons_by_day(apply_policy(snapshots, policy, BERLIN))
    assert list(reasons) == [
        "2026-04-10",
        "2026-04-09",
        "2026-04-08",
        "2026-04-07",
        "2026-04-06",
        "2026-04-02",
        "2026-04-01",
        "2026-03-31",
        "2026-03-30",
        "2026-03-27",
        "2026-02-28",
        "2026-01-31",
    ]
    assert reasons["2026-03-31"] == (
        "business day 8 of 10",
        "month end 2026-03",
        "quarter end FY2026 Q4",
        "fiscal year end FY2026",
    )
    assert reasons["2026-04-10"][1:] == (
        "month end 2026-04",
        "quarter end FY2027 Q1",
        "fiscal year end FY2027",
    )
