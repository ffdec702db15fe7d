"""Property tests of the retention policy: invariants that must hold for any calendar."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from dedupe.retention import (
    COUNT_FIELDS,
    UNLIMITED,
    Decision,
    Duration,
    Policy,
    ReasonKind,
    SnapshotInfo,
    apply_policy,
)

ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]
SETTINGS = settings(max_examples=60, deadline=None)

counts = st.none() | st.just(UNLIMITED) | st.integers(0, 6)
durations = st.none() | st.builds(
    Duration,
    years=st.integers(0, 1),
    months=st.integers(0, 3),
    days=st.integers(1, 20),
    hours=st.integers(0, 30),
)
policies = st.builds(
    Policy,
    keep_last=counts,
    keep_business_days=counts,
    business_days=st.frozensets(st.integers(0, 6), min_size=1),
    holidays=st.frozensets(st.dates(date(2025, 12, 1), date(2026, 3, 1)), max_size=8),
    keep_daily=counts,
    keep_weekly=counts,
    keep_monthly=counts,
    keep_quarterly=counts,
    keep_yearly=counts,
    fiscal_year_start=st.integers(1, 12),
    keep_within=durations,
    keep_tags=st.frozensets(st.sampled_from(["a", "b", "c"]), max_size=2),
    max_backups=st.none(),
)


@st.composite
def snapshot_lists(draw: st.DrawFn, max_size: int = 40) -> list[SnapshotInfo]:
    """Snapshots on a few days of 1.5 years (gaps and same-day clusters), in several zones."""
    days = draw(st.lists(st.integers(0, 540), min_size=1, max_size=15))
    count = draw(st.integers(0, max_size))
    result = []
    for index in range(count):
        offset = timedelta(days=draw(st.sampled_from(days)), minutes=draw(st.integers(0, 1439)))
        moment = (datetime(2025, 1, 1) + offset).replace(tzinfo=draw(st.sampled_from(ZONES)))
        result.append(
            SnapshotInfo(
                id=f"{index:04x}",
                time=moment,
                host=draw(st.sampled_from(["pc", "server"])),
                paths=draw(st.sampled_from([("/srv",), ("/srv", "/etc"), ("/etc", "/srv")])),
                tags=draw(st.frozensets(st.sampled_from(["a", "b", "c"]), max_size=2)),
                held=draw(st.integers(0, 3)) == 0,
                hold_reason=draw(st.none() | st.just("legal hold")),
            )
        )
    return result


def kept_ids(decisions: list[Decision]) -> set[str]:
    return {d.snapshot.id for d in decisions if d.keep}


def only_rule(policy: Policy, rule: str) -> Policy:
    """`policy` stripped down to one rule (calendar settings stay: they shape that rule)."""
    stripped = replace(policy, keep_within=None, keep_tags=frozenset(), max_backups=None)
    return replace(stripped, **{name: None for name in COUNT_FIELDS if name != rule})


@SETTINGS
@given(snapshot_lists(), policies, st.sampled_from(COUNT_FIELDS), st.sampled_from(ZONES))
def test_a_snapshot_kept_by_one_rule_is_kept_by_the_union(
    snapshots: list[SnapshotInfo], policy: Policy, rule: str, tz: ZoneInfo
) -> None:
    single = only_rule(policy, rule)
    assert kept_ids(apply_policy(snapshots, single, tz)) <= kept_ids(
        apply_policy(snapshots, policy, tz)
    )


@SETTINGS
@given(snapshot_lists(), st.integers(1, 8), policies, st.sampled_from(ZONES))
def test_keep_last_n_always_keeps_the_n_newest_of_each_group(
    snapshots: list[SnapshotInfo], n: int, others: Policy, tz: ZoneInfo
) -> None:
    decisions = apply_policy(snapshots, replace(others, keep_last=n), tz)
    by_group: dict[object, list[SnapshotInfo]] = defaultdict(list)
    for snapshot in snapshots:
        by_group[snapshot.group_key].append(snapshot)
    expected = set()
    for members in by_group.values():
        members.sort(key=lambda s: (s.time.astimezone(UTC), s.id), reverse=True)
        expected |= {s.id for s in members[:n]}
    assert expected <= kept_ids(decisions)


@SETTINGS
@given(snapshot_lists(), policies, st.none() | st.integers(1, 5), st.sampled_from(ZONES))
def test_nothing_held_is_ever_removed(
    snapshots: list[SnapshotInfo], policy: Policy, cap: int | None, tz: ZoneInfo
) -> None:
    decisions = apply_policy(snapshots, replace(policy, max_backups=cap), tz)
    assert len(decisions) == len(snapshots)
    for decision in decisions:
        if decision.snapshot.held:
            assert decision.keep
            assert decision.kinds[0] == ReasonKind.HELD


@SETTINGS
@given(snapshot_lists(), policies, st.integers(1, 5), st.sampled_from(ZONES))
def test_max_backups_caps_each_group_except_for_holds(
    snapshots: list[SnapshotInfo], policy: Policy, cap: int, tz: ZoneInfo
) -> None:
    uncapped = apply_policy(snapshots, policy, tz)
    capped = apply_policy(snapshots, replace(policy, max_backups=cap), tz)
    kept_before: dict[object, int] = defaultdict(int)
    kept_after: dict[object, int] = defaultdict(int)
    held: dict[object, int] = defaultdict(int)
    for before, after in zip(uncapped, capped, strict=True):
        key = before.snapshot.group_key
        kept_before[key] += before.keep
        kept_after[key] += after.keep
        held[key] += before.snapshot.held
        assert after.keep <= before.keep  # the cap only ever removes
    for key, count in kept_after.items():
        assert count <= max(cap, held[key])
        assert count >= min(cap, kept_before[key])  # and removes no more than the excess


@SETTINGS
@given(snapshot_lists(), policies, st.randoms(use_true_random=False), st.sampled_from(ZONES))
def test_the_result_is_deterministic_and_independent_of_input_order(
    snapshots: list[SnapshotInfo], policy: Policy, rng: object, tz: ZoneInfo
) -> None:
    first = apply_policy(snapshots, policy, tz)
    shuffled = list(snapshots)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert apply_policy(shuffled, policy, tz) == first
    assert apply_policy(snapshots, policy, tz) == first


@SETTINGS
@given(
    snapshot_lists(),
    st.integers(1, 10),
    st.sampled_from(["keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]),
    st.sampled_from(ZONES),
)
def test_gaps_never_cost_buckets_and_the_newest_is_always_kept(
    snapshots: list[SnapshotInfo], n: int, rule: str, tz: ZoneInfo
) -> None:
    decisions = apply_policy(snapshots, Policy(**{rule: n}), tz)
    by_group: dict[object, list[Decision]] = defaultdict(list)
    for decision in decisions:
        by_group[decision.snapshot.group_key].append(decision)
    for members in by_group.values():
        assert members[0].keep  # newest first, and the newest is always kept
        by_rule = [d for d in members if any(r.kind != ReasonKind.HELD for r in d.reasons)]
        buckets = {_bucket(rule, d.snapshot.time.astimezone(tz).date()) for d in members}
        assert len(by_rule) == min(n, len(buckets))


def _bucket(rule: str, day: date) -> object:
    return {
        "keep_daily": day,
        "keep_weekly": day.isocalendar()[:2],
        "keep_monthly": (day.year, day.month),
        "keep_yearly": day.year,
    }[rule]


@SETTINGS
@given(snapshot_lists(), st.integers(1, 10), st.sampled_from(ZONES))
def test_business_day_rule_keeps_only_business_days(
    snapshots: list[SnapshotInfo], n: int, tz: ZoneInfo
) -> None:
    policy = Policy(keep_business_days=n, business_days=frozenset({1, 2, 3, 4, 5}))
    for decision in apply_policy(snapshots, policy, tz):
        if ReasonKind.BUSINESS_DAY in decision.kinds:
            assert decision.snapshot.time.astimezone(tz).weekday() in {1, 2, 3, 4, 5}


@SETTINGS
@given(st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1)), durations, st.sampled_from(ZONES))
def test_keep_within_start_is_never_after_the_newest(
    moment: datetime, duration: Duration | None, tz: ZoneInfo
) -> None:
    newest = moment.replace(tzinfo=tz)
    span = duration or Duration(hours=1)
    start = span.start_before(newest, tz)
    assert start < newest
    assert newest - start >= timedelta(hours=span.hours)
