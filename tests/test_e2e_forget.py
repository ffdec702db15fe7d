"""End-to-end tests of `forget`, `hold` and `release` through the real CLI.

One repository of backdated snapshots (`snapshot --time`) is built once per module; tests that
only read it (dry runs) use it directly, tests that change it work on a copy of its folder, which
costs nothing compared with building another history. Every CLI call runs with a fixed local time
zone (central European, written as a POSIX rule so that no tz database is needed), because the
policy judges calendars in local time.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from dedupe.storage import open_storage
from tests.clitools import Cli
from tests.support import PASSWORD

BERLIN = "CET-1CEST,M3.5.0,M10.5.0/3"
PRACTICE = [
    "--keep-business-days",
    "10",
    "--keep-monthly",
    "unlimited",
    "--keep-quarterly",
    "unlimited",
    "--keep-yearly",
    "unlimited",
    "--fiscal-year-start",
    "7",
]
FIRST_NIGHT = date(2025, 12, 29)  # a Monday
LAST_NIGHT = date(2026, 2, 1)  # a Sunday; 31 January 2026 is a Saturday
DUMP = b"".join(b"INSERT INTO visits VALUES (%d);\n" % i for i in range(2000))


@dataclass
class Practice:
    """The shared repository: who made which snapshot when."""

    cli: Cli
    src: Path
    nightly: dict[date, str]  # host "server", the folder src: one snapshot a night at 23:00
    frontdesk: dict[date, str]  # host "frontdesk", a stream practice.sql, early December
    tzcheck: dict[str, str]  # host "tzcheck": recorded time -> id
    times: dict[str, str]  # id -> the time string `snapshot --json` printed


def make_cli(repo: Path, cache: Path) -> Cli:
    cli = Cli(str(repo), str(cache))
    cli.env["TZ"] = BERLIN
    return cli


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Practice:
    base = tmp_path_factory.mktemp("practice")
    cli = make_cli(base / "repo", base / "cache")
    cli("init")
    src = base / "srv" / "practice"
    (src / "scans").mkdir(parents=True)
    (src / "db.dump").write_bytes(DUMP)
    (src / "scans" / "letter.pdf").write_bytes(os.urandom(3000))
    (src / "notes.txt").write_text("recall list\n")

    jobs: list[tuple[str, tuple[str, ...], bytes | None]] = []
    night = FIRST_NIGHT
    while night <= LAST_NIGHT:
        when = f"{night.isoformat()}T23:00:00+01:00"
        jobs.append(("nightly", ("snapshot", str(src), "--host", "server", "--time", when), None))
        night += timedelta(days=1)
    for day in (1, 2, 3):  # Monday to Wednesday, 1-3 December 2025
        when = f"2025-12-0{day}T19:00:00+01:00"
        args = ("snapshot", "-", "--stdin-name", "practice.sql", "--host", "frontdesk")
        jobs.append(("frontdesk", (*args, "--time", when), DUMP))
    # Thursday noon UTC, and Friday 23:30 UTC, which is already Saturday 00:30 in Berlin.
    for when in ("2026-01-29T12:00:00+00:00", "2026-01-30T23:30:00+00:00"):
        note = src / "notes.txt"
        jobs.append(("tzcheck", ("snapshot", str(note), "--host", "tzcheck", "--time", when), None))

    def run(numbered: tuple[int, tuple[str, tuple[str, ...], bytes | None]]) -> dict:
        number, (_kind, args, stdin) = numbered
        # Separate files caches: concurrent snapshots must not share one cache folder.
        env = {"DEDUPE_CACHE_DIR": str(base / f"cache-{number}")}
        return cli(*args, "--json", input=stdin, env=env).json()

    # Snapshots take a shared lock, so they may run side by side: this keeps the fixture fast.
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, enumerate(jobs)))
    nightly: dict[date, str] = {}
    frontdesk: dict[date, str] = {}
    tzcheck: dict[str, str] = {}
    times: dict[str, str] = {}
    for (kind, args, _stdin), result in zip(jobs, results, strict=True):
        when = args[-1]
        times[result["id"]] = result["time"]
        if kind == "nightly":
            nightly[date.fromisoformat(when[:10])] = result["id"]
        elif kind == "frontdesk":
            frontdesk[date.fromisoformat(when[:10])] = result["id"]
        else:
            tzcheck[when] = result["id"]
    assert len(nightly) == 35 and len(cli("snapshots", "--json").json()) == 40
    return Practice(cli, src, nightly, frontdesk, tzcheck, times)


def copy_of(practice: Practice, tmp_path: Path) -> Cli:
    """A private copy of the shared repository, for a test that changes it."""
    shutil.copytree(practice.cli.repo, tmp_path / "repo")
    return make_cli(tmp_path / "repo", tmp_path / "cache")


def repo_state(repo: str) -> dict[str, bytes]:
    """Every file of the repository folder with its bytes: "nothing changed" means equal."""
    state = {}
    for folder, _dirs, files in os.walk(repo):
        for name in files:
            path = os.path.join(folder, name)
            state[os.path.relpath(path, repo)] = Path(path).read_bytes()
    return state


def snapshot_ids(cli: Cli) -> set[str]:
    return {s["id"] for s in cli("snapshots", "--json").json()}


def d(text: str) -> date:
    return date.fromisoformat(text)


# The practice policy over the "server" history, 29 Dec 2025 (Mon) to 1 Feb 2026 (Sun),
# fiscal year from July.
EXPECTED_SERVER_KEEP: dict[date, list[str]] = {
    d("2026-02-01"): ["month end 2026-02", "quarter end FY2026 Q3", "fiscal year end FY2026"],
    d("2026-01-31"): ["month end 2026-01"],  # a Saturday: the month-end backup, no business day
    **{
        day: [f"business day {rank} of 10"]
        for rank, day in enumerate(
            [d(f"2026-01-{n:02d}") for n in (30, 29, 28, 27, 26, 23, 22, 21, 20, 19)], start=1
        )
    },
    d("2025-12-31"): ["month end 2025-12", "quarter end FY2026 Q2"],
}


def test_practice_policy_dry_run_reports_and_changes_nothing(practice: Practice) -> None:
    cli = practice.cli
    before = repo_state(cli.repo)
    result = cli("forget", *PRACTICE, "--dry-run", "--json").json()
    table = cli("forget", *PRACTICE, "--dry-run").text
    assert repo_state(cli.repo) == before

    assert result["dry_run"] is True
    keep = {item["id"]: item for item in result["keep"]}
    remove = {item["id"]: item for item in result["remove"]}
    assert len(keep) + len(remove) == 40 and not keep.keys() & remove.keys()
    for item in result["keep"]:
        assert {"id", "time", "reasons"} <= item.keys()
        assert item["time"] == practice.times[item["id"]]
    for item in result["remove"]:
        assert {"id", "time"} <= item.keys() and "reasons" not in item
        assert item["time"] == practice.times[item["id"]]

    server_kept = {
        day: keep[sid]["details"] for day, sid in practice.nightly.items() if sid in keep
    }
    assert server_kept == EXPECTED_SERVER_KEEP
    removed_days = {day for day, sid in practice.nightly.items() if sid in remove}
    assert len(removed_days) == 35 - 13
    assert d("2026-01-30") not in removed_days and d("2026-01-16") in removed_days
    assert keep[practice.nightly[d("2026-02-01")]]["reasons"] == [
        "month end",
        "quarter end",
        "fiscal year end",
    ]
    assert keep[practice.nightly[d("2026-01-30")]]["reasons"] == ["business day"]

    # Groups are judged apart: the front desk's three December dumps are its own newest.
    assert keep[practice.frontdesk[d("2025-12-03")]]["details"] == [
        "business day 1 of 10",
        "month end 2025-12",
        "quarter end FY2026 Q2",
        "fiscal year end FY2026",
    ]
    assert keep[practice.frontdesk[d("2025-12-01")]]["details"] == ["business day 3 of 10"]

    # The human table: one block per group, local times, the verdict and the reasons.
    assert "host server, paths " + str(practice.src) + ": keep 13, remove 22 of 35" in table
    assert "host frontdesk, paths /practice.sql: keep 3, remove 0 of 3" in table
    jan31 = practice.nightly[d("2026-01-31")][:8]
    assert f"{jan31}  Sat 2026-01-31 23:00  keep    month end 2026-01" in table
    jan16 = practice.nightly[d("2026-01-16")][:8]
    assert f"{jan16}  Fri 2026-01-16 23:00  remove" in table
    assert "dry run: would keep" in table


def test_calendar_is_judged_in_local_time(practice: Practice) -> None:
    """23:30 UTC on a Friday is Saturday in Berlin: not a business day there, but one in UTC."""
    thursday = practice.tzcheck["2026-01-29T12:00:00+00:00"]
    late_friday = practice.tzcheck["2026-01-30T23:30:00+00:00"]
    berlin = practice.cli("forget", "--keep-business-days", "1", "--dry-run", "--json").json()
    assert thursday in {item["id"] for item in berlin["keep"]}
    assert late_friday in {item["id"] for item in berlin["remove"]}
    utc = practice.cli(
        "forget", "--keep-business-days", "1", "--dry-run", "--json", env={"TZ": "UTC0"}
    ).json()
    assert late_friday in {item["id"] for item in utc["keep"]}
    assert thursday in {item["id"] for item in utc["remove"]}
    table = practice.cli("forget", "--keep-business-days", "1", "--dry-run").text
    assert f"{late_friday[:8]}  Sat 2026-01-31 00:30  remove" in table


def test_forget_removes_what_the_policy_does_not_keep(practice: Practice, tmp_path: Path) -> None:
    cli = copy_of(practice, tmp_path)
    planned = cli("forget", *PRACTICE, "--dry-run", "--json").json()
    done = cli("forget", *PRACTICE, "--json").json()
    assert done["dry_run"] is False
    assert [item["id"] for item in done["remove"]] == [item["id"] for item in planned["remove"]]
    kept = {item["id"] for item in planned["keep"]}
    assert snapshot_ids(cli) == kept and len(kept) == 18
    assert len(os.listdir(os.path.join(cli.repo, "snapshots"))) == 18
    # Running the same policy again finds nothing more to remove.
    assert cli("forget", *PRACTICE, "--json").json()["remove"] == []

    # What was kept still restores bit for bit: the month-end folder and the front desk dump.
    target = tmp_path / "restore"
    cli("restore", practice.nightly[d("2026-01-31")][:12], "--target", str(target))
    restored = target / str(practice.src).lstrip("/")
    for name in ("db.dump", "scans/letter.pdf", "notes.txt"):
        assert (restored / name).read_bytes() == (practice.src / name).read_bytes()
    assert cli("cat", practice.frontdesk[d("2025-12-01")], "practice.sql").out == DUMP


def test_held_snapshot_survives_until_released(practice: Practice, tmp_path: Path) -> None:
    cli = copy_of(practice, tmp_path)
    old = practice.nightly[d("2026-01-14")]  # removed by the policy unless held
    held = cli("hold", old[:10], "--reason", "legal hold  2026-17", "--json").json()
    assert held == {"id": old, "held": True, "hold_reason": "legal hold 2026-17"}
    again = cli("hold", old, "--json").json()  # without --reason the reason stays
    assert again["hold_reason"] == "legal hold 2026-17"
    listed = {s["id"]: s for s in cli("snapshots", "--json").json()}
    assert listed[old]["held"] is True and listed[old]["hold_reason"] == "legal hold 2026-17"
    assert sum(s["held"] for s in listed.values()) == 1

    result = cli("forget", *PRACTICE, "--json").json()
    kept = {item["id"]: item for item in result["keep"]}
    assert kept[old]["reasons"] == ["held"]
    assert kept[old]["details"] == ["held: legal hold 2026-17"]
    assert old in snapshot_ids(cli)

    released = cli("release", old, "--json").json()
    assert released == {"id": old, "held": False, "hold_reason": None}
    assert "was not held" in cli("release", old).text
    result = cli("forget", *PRACTICE, "--json").json()
    assert [item["id"] for item in result["remove"]] == [old]
    assert old not in snapshot_ids(cli)
    assert cli("hold", old, check=False).code == 2  # gone: no snapshot matches


def test_forget_without_a_keep_rule_refuses(practice: Practice, tmp_path: Path) -> None:
    cli = copy_of(practice, tmp_path)
    only_cap = tmp_path / "cap.toml"
    only_cap.write_text("max-backups = 5\nfiscal-year-start = 7\n")
    before = repo_state(cli.repo)
    for args in ([], ["--max-backups", "5"], ["--keep-last", "0"], ["--policy", str(only_cap)]):
        result = cli("forget", *args, check=False)
        assert result.code == 2, (args, result.err)
        assert "no keep rule" in result.err and "nothing was removed" in result.err
        assert "Traceback" not in result.err and result.out == b""
    assert repo_state(cli.repo) == before


def test_max_backups_counts_holds_but_never_removes_them(
    practice: Practice, tmp_path: Path
) -> None:
    cli = copy_of(practice, tmp_path)
    oldest = [practice.nightly[FIRST_NIGHT], practice.nightly[FIRST_NIGHT + timedelta(days=1)]]
    for sid in oldest:
        cli("hold", sid, "--reason", "audit")
    result = cli("forget", "--keep-last", "unlimited", "--max-backups", "5", "--json").json()
    newest = [practice.nightly[LAST_NIGHT - timedelta(days=n)] for n in range(3)]
    server = set(practice.nightly.values())
    assert {i["id"] for i in result["keep"]} & server == {*oldest, *newest}
    removed = {i["id"]: i for i in result["remove"]}
    assert len(removed) == 30 and removed.keys() <= server  # the other groups are under the cap
    jan28 = removed[practice.nightly[d("2026-01-28")]]
    assert jan28["details"] == ["over max-backups 5 (was: last 5)"]
    assert snapshot_ids(cli) == {
        *oldest,
        *newest,
        *practice.frontdesk.values(),
        *practice.tzcheck.values(),
    }


def test_policy_file_gives_the_same_verdicts_as_flags(practice: Practice, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        textwrap.dedent(
            """\
            # the practice's retention policy
            keep-business-days = 10
            business-days = "mon-fri"
            keep-monthly = "unlimited"
            keep-quarterly = "unlimited"
            keep-yearly = "unlimited"
            fiscal-year-start = 7
            """
        )
    )
    from_flags = practice.cli("forget", *PRACTICE, "--dry-run", "--json").json()
    from_file = practice.cli("forget", "--policy", str(policy), "--dry-run", "--json").json()
    assert from_file == from_flags
    # A flag replaces the file's value for that setting.
    narrower = practice.cli(
        "forget", "--policy", str(policy), "--keep-business-days", "3", "--dry-run", "--json"
    ).json()
    kept = {item["id"] for item in narrower["keep"]}
    assert practice.nightly[d("2026-01-28")] in kept
    assert practice.nightly[d("2026-01-27")] not in kept
    bad = tmp_path / "bad.toml"
    bad.write_text("keep-montly = 3\n")
    result = practice.cli("forget", "--policy", str(bad), "--dry-run", check=False)
    assert result.code == 2 and "keep-montly" in result.err


def test_forget_and_hold_exit_11_while_locked(practice: Practice, tmp_path: Path) -> None:
    """Another process's lock (here: this test process, alive, so never stale) gives exit 11."""
    from dedupe.repo.repository import Repository

    cli = copy_of(practice, tmp_path)
    storage = open_storage(cli.repo)
    repo = Repository.open(storage, lambda: PASSWORD.encode())
    snapshots_before = sorted(os.listdir(os.path.join(cli.repo, "snapshots")))
    try:
        for exclusive in (True, False):  # gc running, or a snapshot running
            with repo.lock(exclusive=exclusive):
                result = cli("forget", *PRACTICE, check=False)
                assert result.code == 11, result.err
                assert "locked" in result.err and "Traceback" not in result.err
                held = cli("hold", practice.nightly[d("2026-01-14")], check=False)
                assert held.code == 11, held.err
                # A dry run takes no lock and writes nothing, so it still answers.
                assert cli("forget", *PRACTICE, "--dry-run", "--json").json()["remove"]
        assert sorted(os.listdir(os.path.join(cli.repo, "snapshots"))) == snapshots_before
        assert os.listdir(os.path.join(cli.repo, "locks")) == []
        assert len(cli("forget", *PRACTICE, "--json").json()["remove"]) == 22
    finally:
        storage.close()


def test_forget_gc_forgets_first(practice: Practice, tmp_path: Path) -> None:
    cli = copy_of(practice, tmp_path)
    dry = cli("forget", "--keep-last", "1", "--gc", "--dry-run")
    assert dry.code == 0 and "gc skipped" in dry.err
    result = cli("forget", "--keep-last", "1", "--gc", "--json", check=False)
    assert len(snapshot_ids(cli)) == 3  # one per group, whatever gc did afterwards
    assert len(result.json()["remove"]) == 37
    assert result.code == 0, result.err
    assert "freed_bytes" in result.json()["gc"]
