"""Tests of the POLICY flags and the TOML policy file (`dedupe.cli.policy_args`)."""

from __future__ import annotations

import argparse
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dedupe.cli.policy_args import add_policy_arguments, policy_from_args
from dedupe.errors import UsageError
from dedupe.retention import UNLIMITED, Duration, Policy, SnapshotInfo, apply_policy


def parse(*argv: str) -> Policy:
    parser = argparse.ArgumentParser(prog="dedupe forget")
    add_policy_arguments(parser)
    return policy_from_args(parser.parse_args(list(argv)))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_no_flags_is_a_policy_without_keep_rules() -> None:
    policy = parse()
    assert policy == Policy()
    assert not policy.has_keep_rule()


def test_every_flag_on_the_command_line(tmp_path: Path) -> None:
    holidays = write(tmp_path / "holidays.txt", "2026-12-25\n2026-12-26\n")
    policy = parse(
        "--keep-last", "3",
        "--keep-business-days", "10",
        "--business-days", "tue,wed,thu,fri,sat",
        "--holidays", str(holidays),
        "--keep-daily", "7",
        "--keep-weekly", "unlimited",
        "--keep-monthly", "UNLIMITED",
        "--keep-quarterly", "8",
        "--keep-yearly", "0",
        "--fiscal-year-start", "7",
        "--keep-within", "14d",
        "--keep-tag", "monthly-archive",
        "--keep-tag", "audit",
        "--max-backups", "30",
    )  # fmt: skip
    assert policy == Policy(
        keep_last=3,
        keep_business_days=10,
        business_days=frozenset({1, 2, 3, 4, 5}),
        holidays=frozenset({date(2026, 12, 25), date(2026, 12, 26)}),
        keep_daily=7,
        keep_weekly=UNLIMITED,
        keep_monthly=UNLIMITED,
        keep_quarterly=8,
        keep_yearly=0,
        fiscal_year_start=7,
        keep_within=Duration(days=14),
        keep_tags=frozenset({"monthly-archive", "audit"}),
        max_backups=30,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mon,tue,wed", {0, 1, 2}),
        ("tue-sat", {1, 2, 3, 4, 5}),
        ("Monday, Friday", {0, 4}),
        ("mon-wed,fri", {0, 1, 2, 4}),
        ("sun", {6}),
    ],
)
def test_business_days_forms(text: str, expected: set[int]) -> None:
    assert parse("--business-days", text).business_days == frozenset(expected)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--keep-last", "-1"], "negative"),
        (["--keep-daily", "many"], "not a whole number or 'unlimited'"),
        (["--keep-monthly", "1.5"], "not a whole number"),
        (["--fiscal-year-start", "13"], "not a month number"),
        (["--fiscal-year-start", "0"], "not a month number"),
        (["--fiscal-year-start", "july"], "not a month number"),
        (["--business-days", "mon,funday"], "'funday' is not a weekday"),
        (["--business-days", "sat-mon"], "runs backwards"),
        (["--business-days", ","], "names no weekday"),
        (["--keep-within", "14x"], "not a duration"),
        (["--keep-within", "0d"], "positive"),
        (["--max-backups", "0"], "at least 1"),
        (["--max-backups", "unlimited"], "not a whole number"),
        (["--keep-tag", ""], "tag cannot be empty"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse(*argv)
    assert argv[0] in str(caught.value)
    assert caught.value.exit_code == 2


def test_holidays_file_allows_comments_and_blank_lines(tmp_path: Path) -> None:
    holidays = write(
        tmp_path / "holidays.txt",
        "# public holidays 2026\n\n2026-04-03   # Good Friday\n  2026-04-06\n\n#2026-05-01\n",
    )
    policy = parse("--holidays", str(holidays))
    assert policy.holidays == frozenset({date(2026, 4, 3), date(2026, 4, 6)})


def test_holidays_file_with_a_bad_date_names_file_and_line(tmp_path: Path) -> None:
    holidays = write(tmp_path / "holidays.txt", "2026-04-03\n2026-02-30\n")
    with pytest.raises(UsageError, match=r"holidays.txt, line 2: '2026-02-30' is not an ISO date"):
        parse("--holidays", str(holidays))


def test_unreadable_holidays_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--holidays: cannot read .*missing.txt"):
        parse("--holidays", str(tmp_path / "missing.txt"))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UsageError, match="not a UTF-8 text file"):
        parse("--holidays", str(binary))


# --- the policy file ------------------------------------------------------------------------

PRACTICE_POLICY = """\
# The practice's retention policy
keep-business-days = 10
business-days = ["mon", "tue", "wed", "thu", "fri"]
holidays = [2026-12-25, "2026-04-03"]
holidays-file = "more-holidays.txt"
keep-monthly = "unlimited"
keep-quarterly = "unlimited"
keep-yearly = "unlimited"
fiscal-year-start = 4
keep-tag = ["legal"]
max-backups = 60
"""


def test_policy_file_is_read_with_holidays_relative_to_it(tmp_path: Path) -> None:
    write(tmp_path / "more-holidays.txt", "2026-04-06\n")
    policy_file = write(tmp_path / "policy.toml", PRACTICE_POLICY)
    policy = parse("--policy", str(policy_file))
    assert policy == Policy(
        keep_business_days=10,
        holidays=frozenset({date(2026, 12, 25), date(2026, 4, 3), date(2026, 4, 6)}),
        keep_monthly=UNLIMITED,
        keep_quarterly=UNLIMITED,
        keep_yearly=UNLIMITED,
        fiscal_year_start=4,
        keep_tags=frozenset({"legal"}),
        max_backups=60,
    )


def test_flags_override_the_policy_file(tmp_path: Path) -> None:
    write(tmp_path / "more-holidays.txt", "2026-04-06\n")
    policy_file = write(tmp_path / "policy.toml", PRACTICE_POLICY)
    cli_holidays = write(tmp_path / "cli-holidays.txt", "2026-01-01\n")
    policy = parse(
        "--policy", str(policy_file),
        "--keep-business-days", "5",
        "--fiscal-year-start", "7",
        "--holidays", str(cli_holidays),
        "--keep-tag", "audit",
    )  # fmt: skip
    assert policy.keep_business_days == 5
    assert policy.fiscal_year_start == 7
    assert policy.holidays == frozenset({date(2026, 1, 1)})  # replaces both file settings
    assert policy.keep_tags == frozenset({"audit"})
    assert policy.keep_monthly == UNLIMITED  # untouched settings come from the file
    assert policy.max_backups == 60


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keep-hourly = 3\n", "unknown setting 'keep-hourly'"),
        ("keep_last = 3\n", "unknown setting 'keep_last'"),
        ("keep-last = -3\n", "keep-last: -3 is negative"),
        ("keep-last = true\n", "keep-last: True is not a whole number"),
        ("keep-daily = 2.5\n", "keep-daily: 2.5 is not a whole number"),
        ("fiscal-year-start = 14\n", "fiscal-year-start: 14 is not a month"),
        ('holidays = ["2026-13-01"]\n', "holidays: '2026-13-01' is not an ISO date"),
        ('holidays = "holidays.txt"\n', "use holidays-file"),
        ('holidays-file = "nope.txt"\n', "holidays-file: cannot read"),
        ("business-days = [1, 2]\n", "not a list of names"),
        ("keep-within = 14\n", "not a duration"),
        ("keep-last = \n", "not valid TOML"),
    ],
)
def test_bad_policy_files_are_usage_errors(tmp_path: Path, text: str, message: str) -> None:
    policy_file = write(tmp_path / "policy.toml", text)
    with pytest.raises(UsageError, match=message) as caught:
        parse("--policy", str(policy_file))
    assert "policy.toml" in str(caught.value)


def test_missing_policy_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read policy file"):
        parse("--policy", str(tmp_path / "absent.toml"))


def test_flags_missing_from_the_namespace_count_as_not_given() -> None:
    partial = argparse.Namespace(keep_last="2")
    assert policy_from_args(partial) == Policy(keep_last=2)


def test_policy_file_end_to_end_with_the_practice_calendar(tmp_path: Path) -> None:
    """The policy file of docs/RETENTION.md applied to the nights of 20 Jan to 10 Apr 2026."""
    write(tmp_path / "more-holidays.txt", "")
    policy = parse("--policy", str(write(tmp_path / "policy.toml", PRACTICE_POLICY)))
    berlin = ZoneInfo("Europe/Berlin")
    snapshots = [
        SnapshotInfo(
            f"{n:04x}", datetime(2026, 1, 20, 23, tzinfo=berlin) + timedelta(days=n), "pc", ("/",)
        )
        for n in range(81)
    ]
    decisions = apply_policy(snapshots, policy, berlin)
    assert sum(d.keep for d in decisions) == 12
    assert decisions[-1].snapshot.time.date() == date(2026, 1, 20)
    assert not decisions[-1].keep
