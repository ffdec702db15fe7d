"""The scheduler files of a `Job`, as text: systemd units, a launchd plist, a cron line.

Pure functions. Each file starts with (or, for the plist, carries) a mark that says dedupe wrote
it, so `remove` deletes only what `install` wrote and `show` can read the time back
(`scheduled_at`).

- systemd: `dedupe-run.service` (Type=oneshot, the command) and `dedupe-run.timer`
  (`OnCalendar=*-*-* HH:MM:00`, `Persistent=true`: a night missed while the server was off runs
  at the next boot). System units wait for the network (an off-site copy needs it).
- launchd: a plist with `StartCalendarInterval` (a LaunchDaemon for the system, a LaunchAgent for
  a user; launchd runs a missed time when the Mac wakes), output to a log file.
- cron: one line (with the user field in `/etc/cron.d`), `%` escaped as cron needs.
"""

from __future__ import annotations

import plistlib
import re
from typing import Any

from dedupe.schedule.job import LAUNCHD_LABEL, NAME, Job

MARK = "# Written by 'dedupe schedule install'; 'dedupe schedule remove' deletes it."
CRON_MARK = "# dedupe nightly backup (written by 'dedupe schedule install'; remove with 'dedupe schedule remove')"  # noqa: E501
_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_CRON_PLAIN = re.compile(r"[A-Za-z0-9_@+=:,./-]+")


# --- systemd ---------------------------------------------------------------------------------


def systemd_escape(text: str) -> str:
    """Text as systemd reads it back: `%` specifiers and `$` expansion disarmed."""
    return text.replace("%", "%%").replace("$", "$$")


def systemd_quote(arg: str) -> str:
    """One ExecStart argument: plain, or in double quotes with `\\` and `"` escaped."""
    text = systemd_escape(arg)
    if _SYSTEMD_PLAIN.fullmatch(arg):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_service(job: Job) -> str:
    network = "" if job.user else "Wants=network-online.target\nAfter=network-online.target\n"
    command = " ".join(systemd_quote(arg) for arg in job.argv)
    return (
        f"{MARK}\n"
        "[Unit]\n"
        f"Description=dedupe nightly backup (profile {systemd_escape(str(job.profile))})\n"
        f"{network}"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={command}\n"
        "Nice=10\n"
    )


def systemd_timer(job: Job) -> str:
    return (
        f"{MARK}\n"
        "[Unit]\n"
        f"Description=Start {NAME}.service every night at {job.at}\n"
        "\n"
        "[Timer]\n"
        f"OnCalendar=*-*-* {job.at}:00\n"
        "Persistent=true\n"
        f"Unit={NAME}.service\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


# --- launchd ---------------------------------------------------------------------------------


def launchd_plist(job: Job, log_path: str) -> bytes:
    """The job's property list; `Comment` is the mark (launchd ignores keys it does not use)."""
    plist: dict[str, Any] = {
        "Label": LAUNCHD_LABEL,
        "Comment": MARK.lstrip("# "),
        "ProgramArguments": list(job.argv),
        "StartCalendarInterval": {"Hour": job.hour, "Minute": job.minute},
        "StandardOutPath": log_path,
        "StandardErrorPath": log_path,
        "RunAtLoad": False,
    }
    return plistlib.dumps(plist, fmt=plistlib.FMT_XML, sort_keys=False)


# --- cron ------------------------------------------------------------------------------------


def cron_quote(arg: str) -> str:
    """One argument for the shell cron runs, with `%` (a newline to cron) escaped."""
    if _CRON_PLAIN.fullmatch(arg):
        return arg
    return "'" + arg.replace("'", "'\\''").replace("%", "\\%") + "'"


def cron_line(job: Job, run_as: str | None = None) -> str:
    """`MM HH * * * [run_as] command`; `run_as` is the user field of an `/etc/cron.d` file."""
    command = " ".join(cron_quote(arg) for arg in job.argv)
    who = f"{run_as} " if run_as else ""
    return f"{job.minute} {job.hour} * * * {who}{command}"


def cron_d_file(job: Job) -> str:
    """`/etc/cron.d/dedupe-run`: a shell, the mark and the line, run as root."""
    return f"{MARK}\nSHELL=/bin/sh\n{cron_line(job, 'root')}\n"


def crontab_with(existing: str, job: Job) -> str:
    """A user's crontab with our job (replacing an earlier one of ours), the rest as it was."""
    kept = crontab_without(existing).rstrip("\n")
    ours = f"{CRON_MARK}\n{cron_line(job)}\n"
    return f"{kept}\n{ours}" if kept else ours


def crontab_without(existing: str) -> str:
    """A user's crontab without our job: the marked line and the one after it."""
    lines = existing.splitlines(keepends=True)
    kept: list[str] = []
    skip_next = False
    for line in lines:
        if skip_next:
            skip_next = False
            continue
        if line.rstrip("\n") == CRON_MARK:
            skip_next = True
            continue
        kept.append(line)
    return "".join(kept)


def crontab_entry(existing: str) -> str | None:
    """Our job's line in a user's crontab, or None."""
    lines = existing.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line == CRON_MARK:
            return lines[i + 1]
    return None


# --- reading back ----------------------------------------------------------------------------


def is_ours(content: bytes) -> bool:
    """Did `install` write this file (systemd unit, cron.d file or plist)?"""
    if content.startswith(MARK.encode() + b"\n"):
        return True
    try:
        plist = plistlib.loads(content)
    except Exception:  # not a plist at all (plistlib raises several kinds)
        return False
    return isinstance(plist, dict) and plist.get("Comment") == MARK.lstrip("# ")


def scheduled_at(content: bytes) -> tuple[int, int] | None:
    """(hour, minute) from a timer, plist or cron text written by `install`; None if absent."""
    text = content.decode("utf-8", "replace")
    found = re.search(r"^OnCalendar=\*-\*-\* (\d\d):(\d\d):00$", text, re.MULTILINE)
    if found:
        return int(found[1]), int(found[2])
    found = re.search(r"^(\d{1,2}) (\d{1,2}) \* \* \* ", text, re.MULTILINE)
    if found:
        return int(found[2]), int(found[1])
    try:
        plist = plistlib.loads(content)
    except Exception:
        return None
    interval = plist.get("StartCalendarInterval") if isinstance(plist, dict) else None
    if isinstance(interval, dict) and {"Hour", "Minute"} <= interval.keys():
        return int(interval["Hour"]), int(interval["Minute"])
    return None
