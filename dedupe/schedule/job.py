"""The nightly job to schedule: which command, at what time, for the system or one user.

A `Job` is a value; the scheduler files are rendered from it (`render`) and placed by `install`.
The command is absolute (the dedupe program, or this Python with `-P -m dedupe`) and names the
profile by its absolute path, because a scheduler starts it with another working folder, another
PATH and no PYTHONPATH. It never carries a password: the profile says where the job finds it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from dedupe.errors import UsageError

NAME = "dedupe-run"  # systemd units dedupe-run.service / .timer, /etc/cron.d/dedupe-run
LAUNCHD_LABEL = "local.dedupe.run"  # "local." is launchd's prefix for a site's own jobs
# 23:00: after office hours, and outside every daylight-saving change (those happen between
# midnight and 03:00), when a 02:00 job would be skipped or run twice.
DEFAULT_AT = "23:00"
_SAFE_TEXT = re.compile(r"[^\x00-\x1f\x7f]*")  # no line breaks or control characters


@dataclass(frozen=True)
class Job:
    """`argv` is the whole command (`argv[0]` absolute); `hour`:`minute` local time; `user`:
    a user's own job (systemd --user, a LaunchAgent, the user's crontab) instead of the
    system's."""

    argv: tuple[str, ...]
    hour: int
    minute: int
    profile: Path
    user: bool = False

    @property
    def at(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"


def parse_at(text: str) -> tuple[int, int]:
    """'HH:MM' (24-hour local time) as (hour, minute); UsageError (exit 2) otherwise."""
    found = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if found is None or int(found[1]) > 23 or int(found[2]) > 59:
        raise UsageError(
            f"--at {text!r} is not a time of day: write it as HH:MM on a 24-hour clock, "
            "for example --at 23:00 or --at 01:30"
        )
    return int(found[1]), int(found[2])


def dedupe_program(argv0: str, python: str) -> list[str]:
    """How a scheduler starts this dedupe: the `dedupe` program we were started as (absolute;
    symlinks kept, so a virtual environment stays the one in use), else `python -P -m dedupe`
    (-P: no script folder or working folder on sys.path)."""
    program = Path(os.path.abspath(argv0)) if argv0 else None
    if (
        program is not None
        and program.name == "dedupe"
        and program.is_file()
        and os.access(program, os.X_OK)
    ):
        return [str(program)]
    return [os.path.abspath(python), "-P", "-m", "dedupe"]


def make_job(
    program: list[str], profile: Path, at: str, *, user: bool = False, quiet: bool = False
) -> Job:
    """The job that runs `dedupe run --profile PROFILE` (with `-q` for cron, whose mail then
    only carries a night with something to say). UsageError for a path no scheduler can carry
    (a line break or control character)."""
    hour, minute = parse_at(at)
    profile = profile.absolute()
    argv = [*program, *(["-q"] if quiet else []), "run", "--profile", str(profile)]
    for arg in argv:
        if not _SAFE_TEXT.fullmatch(arg):
            raise UsageError(
                f"{arg!r} holds a line break or control character, which a scheduler file "
                "cannot carry; move the profile (or dedupe) to a plain path"
            )
    return Job(tuple(argv), hour, minute, profile, user)


def next_run(hour: int, minute: int, now: datetime) -> datetime:
    """The next time the job starts after `now` (local, naive or aware as `now` is), if the
    machine is on; a night missed while it was off runs at boot (systemd, launchd)."""
    today = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)
