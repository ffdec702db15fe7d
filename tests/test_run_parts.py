"""The pure and local parts of `dedupe run`: the exit verdict, the check slices, the state
folder's records, and the rules that decide whether a drive is attached."""

from __future__ import annotations

import os
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from dedupe.profile.model import Drive, Profile, RepositoryConfig
from dedupe.repo.repository import Repository
from dedupe.run.media import profile_media, read_repo_id
from dedupe.run.state import MediumRecord, RunRecord, State, StateError, state_dir
from dedupe.run.verdict import StepResult, check_slice, is_overdue, run_exit_code
from dedupe.storage.local import LocalStorage


def test_the_exit_code_is_the_first_failure_else_3_for_warnings_else_0() -> None:
    ok = StepResult("snapshot", "documents", True, "saved")
    warned = StepResult("snapshot", "documents", True, "2 files unreadable", exit=3, warned=True)
    locked = StepResult("copy", "monday", False, "locked", exit=11)
    nospace = StepResult("copy", "cloud", False, "full", exit=13)
    assert run_exit_code([ok], []) == 0
    assert run_exit_code([ok], ["drive tuesday: not plugged in"]) == 3
    assert run_exit_code([ok, warned], []) == 3
    assert run_exit_code([ok, locked, nospace], ["w"]) == 11


def test_seven_nights_in_a_row_read_every_part_once() -> None:
    start = date(2026, 12, 5)
    parts = {check_slice(start + timedelta(days=n)) for n in range(7)}
    assert parts == {f"{k}/7" for k in range(1, 8)}


def test_overdue_only_after_the_limit() -> None:
    now = datetime(2026, 12, 5, 23, 0).astimezone()
    assert not is_overdue(None, now, 8)
    assert not is_overdue(now - timedelta(days=8), now, 8)
    assert is_overdue(now - timedelta(days=8, hours=1), now, 8)


def test_state_folder_location_follows_the_contract(tmp_path: Path) -> None:
    assert state_dir({"DEDUPE_STATE_DIR": str(tmp_path)}) == tmp_path
    assert state_dir({"XDG_STATE_HOME": "/var/x", "HOME": "/h"}) == Path("/var/x/dedupe")
    assert state_dir({"XDG_STATE_HOME": "relative", "HOME": "/h"}) == Path("/h/.local/state/dedupe")


def test_records_survive_and_two_profiles_keep_apart(tmp_path: Path) -> None:
    one = State(tmp_path, tmp_path / "a" / "dedupe.toml")
    other = State(tmp_path, tmp_path / "b" / "dedupe.toml")
    one.save_media({"monday": MediumRecord(repo_id="ab" * 16, last_copy="2026-12-01T23:00:00")})
    assert one.media()["monday"].repo_id == "ab" * 16
    assert other.media() == {}
    for day in (1, 3, 2):
        one.save_run(RunRecord(time=f"2026-12-0{day}T23:00:00+00:00", ok=True, exit=day))
    last = one.last_run()
    assert last is not None and last.exit == 3
    assert other.last_run() is None


def test_a_damaged_record_is_named_not_read_as_empty(tmp_path: Path) -> None:
    state = State(tmp_path, tmp_path / "dedupe.toml")
    state.media_file.write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON"):
        state.media()


def _profile(tmp_path: Path, mount: Path, url: str) -> Profile:
    drive = Drive("monday", str(mount), url, frozenset({0}))
    return Profile(
        tmp_path / "dedupe.toml", RepositoryConfig(str(tmp_path / "repo")), drives=(drive,)
    )


def test_an_unmounted_drive_is_not_attached(tmp_path: Path) -> None:
    mount = tmp_path / "media" / "monday"
    mount.mkdir(parents=True)
    drive = profile_media(_profile(tmp_path, mount, f"{mount}/repo"), {}, {})[1]
    assert not drive.attached and "not plugged in" in (drive.why_not or "")


def test_a_drive_url_outside_its_mount_is_refused(tmp_path: Path) -> None:
    drive = profile_media(_profile(tmp_path, Path("/"), "sftp://x@y/z"), {}, {})[1]
    assert not drive.attached and "not a folder on the drive" in (drive.why_not or "")
    drive = profile_media(_profile(tmp_path, tmp_path / "m", str(tmp_path / "elsewhere")), {}, {})[
        1
    ]
    assert not drive.attached and "not inside its mount" in (drive.why_not or "")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_mounted_drive_is_new_known_or_another(tmp_path: Path, cheap_kdf: None) -> None:
    mount = tmp_path / "monday"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        profile = _profile(tmp_path, mount, f"{mount}/repo")
        assert profile_media(profile, {}, {})[1].new
        (mount / "repo").mkdir()
        (mount / "repo" / "holiday-photos.jpg").write_bytes(b"x")
        drive = profile_media(profile, {}, {})[1]
        assert not drive.attached and "no dedupe repository" in (drive.why_not or "")
        (mount / "repo" / "holiday-photos.jpg").unlink()
        (mount / "repo").rmdir()
        repo = Repository.init(LocalStorage(str(mount / "repo")), b"pw", 64 * 1024, "zstd:3")
        found = repo.settings.repo_id.hex()
        assert read_repo_id(str(mount / "repo")) == found
        drive = profile_media(profile, {}, {"monday": MediumRecord(repo_id=found)})[1]
        assert drive.attached and drive.repo_id == found
        drive = profile_media(profile, {}, {"monday": MediumRecord(repo_id="00" * 16)})[1]
        assert not drive.attached and "another repository" in (drive.why_not or "")
    finally:
        subprocess.run(["umount", str(mount)], check=True)
