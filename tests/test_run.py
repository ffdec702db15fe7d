"""`dedupe run` and `dedupe status` end to end (issue 13): a profile with a folder source and a
command source, a local repository, two rotating drives on real tmpfs mounts (one left
unmounted: its mount point must stay empty), an off-site copy on the real SFTP server, and three
simulated nights whose weekdays come from `run --time`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clitools import Cli, Result
from tests.servers import SFTPServer
from tests.support import PASSWORD
from tests.test_alerts import Webhook, webhook  # noqa: F401 (the fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tmpfs drives need root to mount")

# 2026-11-30 is a Monday.
MONDAY, TUESDAY, WEDNESDAY = "2026-11-30T23:00:00", "2026-12-01T23:00:00", "2026-12-02T23:00:00"

DUMP = """\
import pathlib, sys
folder = pathlib.Path(sys.argv[1])
if (folder / "fail").exists():
    sys.stdout.write("-- half a dump\\n")
    sys.stdout.flush()
    sys.exit(3)
sys.stdout.write("-- practice dump\\n" + (folder / "rows").read_text())
"""


def mount_tmpfs(path: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)], check=True)


def umount(path: Path) -> None:
    if os.path.ismount(path):
        subprocess.run(["umount", str(path)], check=True)


class Office:
    """One practice: its folders, profile, repository and drives under tmp_path."""

    def __init__(self, tmp_path: Path, offsite_url: str, extra_env: dict[str, str]) -> None:
        self.root = tmp_path
        self.practice = tmp_path / "srv" / "practice"
        self.practice.mkdir(parents=True)
        (self.practice / "letter.txt").write_text("Dear Mrs. Smith\n")
        self.dumpdir = tmp_path / "db"
        self.dumpdir.mkdir()
        (self.dumpdir / "rows").write_text("1,Smith\n")
        (tmp_path / "dump.py").write_text(DUMP)
        self.mounts = {day: tmp_path / "media" / day for day in ("monday", "tuesday")}
        for mount in self.mounts.values():
            mount.mkdir(parents=True)
        password_file = tmp_path / "password"
        password_file.write_text(PASSWORD + "\n")
        password_file.chmod(0o600)
        self.repo = str(tmp_path / "repo")
        self.offsite = offsite_url
        self.profile = tmp_path / "dedupe.toml"
        self.profile.write_text(
            f"""
[repository]
url = "{self.repo}"
password-file = "password"

[[source]]
name = "documents"
paths = ["{self.practice}", "{tmp_path / "not-mounted-share"}"]
exclude = ["*.tmp"]

[[source]]
name = "database"
command = ["{sys.executable}", "{tmp_path / "dump.py"}", "{self.dumpdir}"]
stdin-name = "practice.sql"

[policy]
keep-business-days = 10
keep-monthly = "unlimited"

[[drive]]
name = "monday"
mount = "{self.mounts["monday"]}"
url = "{self.mounts["monday"]}/repo"
weekdays = ["mon"]

[[drive]]
name = "tuesday"
mount = "{self.mounts["tuesday"]}"
url = "{self.mounts["tuesday"]}/repo"
weekdays = ["tue"]

[[offsite]]
name = "cloud"
url = "{offsite_url}"

[alerts]
low-disk-percent = 0
overdue-days = 8
"""
        )
        self.cli = Cli(self.repo, str(tmp_path / "cache"))
        self.cli.env |= extra_env | {"DEDUPE_STATE_DIR": str(tmp_path / "state")}
        self.cli("init")
        self.cli("init", env={"DEDUPE_REPO": offsite_url})

    def run(self, when: str, *extra: str) -> Result:
        # No DEDUPE_PASSWORD: the profile's password-file must be what the steps use.
        env = {"DEDUPE_PASSWORD": ""}
        result = self.cli(
            "run",
            "--profile",
            str(self.profile),
            "--time",
            when,
            "--json",
            *extra,
            env=env,
            check=False,
        )
        return result

    def on(self, url: str, *args: str) -> Result:
        return self.cli(*args, env={"DEDUPE_REPO": url})


@pytest.fixture
def office(tmp_path: Path, sftp_server: SFTPServer) -> Iterator[Office]:
    offsite = sftp_server.url(f"{sftp_server.root}/{uuid.uuid4().hex}")
    place = Office(tmp_path, offsite, sftp_server.env())
    try:
        yield place
    finally:
        for mount in place.mounts.values():
            umount(mount)


def steps_of(result: Result) -> dict[tuple[str, str], dict]:
    return {(s["step"], s["target"]): s for s in result.json()["steps"]}


def test_three_nights_with_drives_offsite_and_a_failing_dump(office: Office) -> None:
    mount_tmpfs(office.mounts["monday"])

    # Monday: the Monday drive is plugged in (new: prepared with the repository's key), the
    # Tuesday drive is not (not its night: no warning), one source path is missing (exit 3).
    night = office.run(MONDAY)
    data = night.json()
    steps = steps_of(night)
    assert night.code == 3, night.err
    assert data["ok"] is True and data["exit"] == 3
    assert steps[("snapshot", "documents")]["ok"] and steps[("snapshot", "database")]["ok"]
    assert "not-mounted-share" in steps[("snapshot", "documents")]["message"]
    assert steps[("init", "monday")]["ok"]
    assert steps[("copy", "monday")]["ok"] and steps[("copy", "cloud")]["ok"]
    assert steps[("check", "repository")]["ok"]
    assert not any(s["target"] == "tuesday" for s in data["steps"])
    assert not any("tuesday" in w for w in data["warnings"]), data["warnings"]
    assert os.listdir(office.mounts["tuesday"]) == []
    drive_url = f"{office.mounts['monday']}/repo"
    on_drive = office.on(drive_url, "snapshots", "--json").json()
    assert sorted(s["paths"][0] for s in on_drive) == ["/practice.sql", str(office.practice)]
    assert office.on(drive_url, "cat", "latest", "practice.sql").out == (
        b"-- practice dump\n1,Smith\n"
    )
    offsite = office.on(office.offsite, "snapshots", "--json").json()
    assert len(offsite) == 2

    # A hold added after Monday's backups reached the drive reaches the drive on Tuesday.
    monday_doc = next(s for s in on_drive if s["paths"][0] == str(office.practice))
    office.cli("hold", monday_doc["id"], "--reason", "month end")

    # Tuesday: the dump fails (nothing saved, exit 1), every other step is still done; the
    # Monday drive is still plugged in (wrong weekday: a warning, but it gets the copy); the
    # Tuesday drive is missing on its night (a warning); its mount point stays empty.
    (office.dumpdir / "fail").write_text("")
    (office.practice / "letter.txt").write_text("Dear Mrs. Smith, changed\n")
    night = office.run(TUESDAY)
    data = night.json()
    steps = steps_of(night)
    assert night.code == 1 and data["exit"] == 1 and data["ok"] is False, night.err
    failed = steps[("snapshot", "database")]
    assert failed["ok"] is False and "exit" in failed["message"].lower()
    assert steps[("snapshot", "documents")]["ok"]
    assert steps[("copy", "monday")]["ok"] and steps[("copy", "cloud")]["ok"]
    assert steps[("check", "repository")]["ok"]
    warnings = " | ".join(data["warnings"])
    assert "monday" in warnings and "Tuesday" in warnings  # wrong weekday
    assert "tuesday" in warnings and "not plugged in" in warnings
    assert os.listdir(office.mounts["tuesday"]) == []
    sql = [s for s in office.cli("snapshots", "--json").json() if s["paths"] == ["/practice.sql"]]
    assert len(sql) == 1  # the failed dump saved nothing
    on_drive = office.on(drive_url, "snapshots", "--json").json()
    held = {s["id"]: s["held"] for s in on_drive}
    assert held[monday_doc["id"]] is True
    assert len(on_drive) == 3

    # Wednesday: the Monday drive is unplugged, the Tuesday drive is plugged in a day late.
    (office.dumpdir / "fail").unlink()
    umount(office.mounts["monday"])
    mount_tmpfs(office.mounts["tuesday"])
    night = office.run(WEDNESDAY)
    data = night.json()
    steps = steps_of(night)
    assert night.code == 3 and data["ok"] is True, night.err
    assert steps[("init", "tuesday")]["ok"] and steps[("copy", "tuesday")]["ok"]
    assert not any(s["target"] == "monday" for s in data["steps"])
    assert any("tuesday" in w and "Wednesday" in w for w in data["warnings"])
    assert os.listdir(office.mounts["monday"]) == []  # unplugged: never written
    # The late drive caught up with everything the repository holds.
    in_repo = {s["id"] for s in office.cli("snapshots", "--json").json()}
    on_tuesday = {
        s["id"] for s in office.on(f"{office.mounts['tuesday']}/repo", "snapshots", "--json").json()
    }
    assert on_tuesday == in_repo

    # status: live for what is attached, from the record for the unplugged Monday drive.
    status = office.cli(
        "status",
        "--profile",
        str(office.profile),
        "--json",
        env={"DEDUPE_PASSWORD": ""},
        check=False,
    )
    assert status.code == 0, status.err
    rows = {row["name"]: row for row in status.json()["destinations"]}
    assert set(rows) == {"repository", "monday", "tuesday", "cloud"}
    assert rows["monday"]["attached"] is False and rows["monday"]["overdue"] is False
    assert rows["monday"]["last_snapshot"] is not None
    assert rows["monday"]["last_snapshot"].startswith("2026-12-01")
    assert rows["tuesday"]["attached"] is True and rows["cloud"]["attached"] is True
    assert rows["repository"]["last_snapshot"].startswith("2026-12-02")
    assert rows["repository"]["free_bytes"] > 0
    assert status.json()["last_run"]["exit"] == 3
    human = office.cli(
        "status", "--profile", str(office.profile), env={"DEDUPE_PASSWORD": ""}, check=False
    )
    assert "monday" in human.text and "not plugged in" in human.text


def test_dry_run_touches_nothing_and_a_missing_profile_is_exit_2(office: Office) -> None:
    mount_tmpfs(office.mounts["monday"])
    before = sorted(os.listdir(office.repo))
    result = office.cli(
        "run",
        "--profile",
        str(office.profile),
        "--time",
        MONDAY,
        "--dry-run",
        env={"DEDUPE_PASSWORD": ""},
    )
    assert "copy to drive monday" in result.text and "skip drive tuesday" in result.text
    assert os.listdir(office.mounts["monday"]) == []
    assert sorted(os.listdir(office.repo)) == before
    missing = office.cli("run", "--profile", str(office.root / "nope.toml"), check=False)
    assert missing.code == 2 and "nope.toml" in missing.err and "Traceback" not in missing.err


def test_a_drive_holding_another_repository_is_not_written(office: Office) -> None:
    mount_tmpfs(office.mounts["monday"])
    assert office.run(MONDAY).json()["ok"]
    # The Monday drive is replaced by a drive that holds some other repository.
    umount(office.mounts["monday"])
    mount_tmpfs(office.mounts["monday"])
    stranger = f"{office.mounts['monday']}/repo"
    office.cli("init", env={"DEDUPE_REPO": stranger})
    before = sorted(os.listdir(stranger))
    night = office.run("2026-12-07T23:00:00")  # the next Monday
    data = night.json()
    assert night.code == 3
    assert not any(s["target"] == "monday" for s in data["steps"])
    assert any("monday" in w and "another repository" in w for w in data["warnings"])
    assert sorted(os.listdir(stranger)) == before
    assert json.dumps(data).count(PASSWORD) == 0


def test_a_clean_night_is_quiet_and_a_failed_night_alerts(
    tmp_path: Path,
    webhook: Webhook,  # noqa: F811 (the fixture imported above)
) -> None:
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    cli.env |= {"DEDUPE_STATE_DIR": str(tmp_path / "state")}
    cli("init")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a")
    flag = tmp_path / "fail"
    dump = tmp_path / "dump.py"
    dump.write_text(
        f"import os, sys\nif os.path.exists({str(flag)!r}): sys.exit(5)\nprint('1,Smith')\n"
    )
    profile = tmp_path / "dedupe.toml"
    profile.write_text(
        f"""
[repository]
url = "{tmp_path / "repo"}"

[[source]]
name = "documents"
paths = ["{tmp_path / "docs"}"]

[[source]]
name = "database"
command = ["{sys.executable}", "{dump}"]
stdin-name = "practice.sql"

[alerts]
urls = ["{webhook.url()}"]
low-disk-percent = 0
"""
    )
    run = ("run", "--profile", str(profile), "--json")
    night = cli(*run, check=False)
    assert night.code == 0, night.err
    assert webhook.posts == []  # nothing to say: no mail every night
    flag.write_text("")
    night = cli(*run, check=False)
    assert night.code == 1, night.err
    assert len(webhook.posts) == 1
    alert = webhook.posts[0]["body"]
    assert "FAILED" in alert["title"]
    assert "snapshot database" in alert["message"] and "5" in alert["message"]
    assert PASSWORD not in json.dumps(webhook.posts)


def test_a_disk_that_fills_in_weeks_is_warned_about_now(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    try:
        cli = Cli(str(disk / "repo"), str(tmp_path / "cache"))
        cli.env |= {"DEDUPE_STATE_DIR": str(tmp_path / "state")}
        cli("init")
        scans = tmp_path / "scans"
        scans.mkdir()
        profile = tmp_path / "dedupe.toml"
        profile.write_text(
            f"""
[repository]
url = "{disk / "repo"}"

[[source]]
name = "scans"
paths = ["{scans}"]

[policy]
keep-daily = "unlimited"

[alerts]
low-disk-percent = 0
low-disk-days = 30
"""
        )
        warnings: list[str] = []
        for night in range(5):  # 3 MiB of new scans a night, all kept: 64 MiB lasts ~20 nights
            (scans / f"scan-{night}.bin").write_bytes(os.urandom(3 << 20))
            when = f"2026-11-{night + 2:02d}T23:00:00"
            result = cli("run", "--profile", str(profile), "--time", when, "--json", check=False)
            assert result.code in (0, 3), result.err
            warnings = result.json()["warnings"]
        assert result.code == 3
        fills = [w for w in warnings if "fills in about" in w]
        assert fills, warnings
        nights = int(fills[0].split("fills in about ")[1].split()[0])
        assert 5 <= nights <= 30, fills[0]
    finally:
        subprocess.run(["umount", str(disk)], check=True)
