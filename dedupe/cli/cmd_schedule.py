"""`dedupe schedule install|remove|show`: the nightly `dedupe run` in the machine's scheduler.

systemd (a `.service` and a `.timer`), launchd on macOS, cron where there is neither
(`dedupe.platform.scheduler_kind`); `--unit-dir DIR` writes systemd units into DIR whatever the
platform and runs nothing (packagers, tests). System level needs root; `--user` installs the
user's own job. `install` prints what it wrote, when it runs next and how to see the last run;
`remove` deletes exactly what `install` wrote; `show` prints it. The job names the profile by
its absolute path and never carries a password: the profile says where the job finds it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from dedupe import platform
from dedupe.cli import profilearg
from dedupe.cli.context import Context, Subparsers
from dedupe.errors import DedupeError, UsageError
from dedupe.schedule import (
    DEFAULT_AT,
    Placement,
    dedupe_program,
    files_for,
    installed,
    make_job,
    next_run,
    placement,
    remove,
    write,
)
from dedupe.schedule.install import refuse_foreign
from dedupe.schedule.render import crontab_entry, crontab_with, crontab_without, scheduled_at


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "schedule",
        parents=[common],
        help="run the profile's nightly job with systemd, launchd or cron",
        description="Install, remove or show the nightly 'dedupe run --profile FILE': a systemd "
        ".service and .timer (a night missed while the server was off runs at boot), a launchd "
        "job on macOS, or a cron line where there is neither.",
        epilog="examples:\n"
        "  dedupe schedule install --profile /etc/dedupe/dedupe.toml --at 22:30\n"
        "  dedupe schedule show        what is installed, and when it runs next\n"
        "  dedupe schedule remove      stop the nightly job\n",
    )
    p.add_argument(
        "action",
        choices=("install", "remove", "show"),
        help="install (or replace) the nightly job, remove it, or show it",
    )
    p.add_argument("--profile", metavar="FILE", help="the profile the job runs (install)")
    p.add_argument(
        "--at",
        default=DEFAULT_AT,
        metavar="HH:MM",
        help=f"the time of day, 24-hour local time (default {DEFAULT_AT})",
    )
    p.add_argument(
        "--unit-dir",
        metavar="DIR",
        help="write systemd units into DIR, whatever the platform, and run nothing",
    )
    p.add_argument(
        "--user",
        action="store_true",
        help="the current user's own job instead of the system's (which needs root)",
    )
    p.set_defaults(handler=cmd_schedule)


def cmd_schedule(ctx: Context) -> int:
    args = ctx.args
    unit_dir = Path(args.unit_dir).absolute() if args.unit_dir else None
    changes = args.action != "show"
    if changes and unit_dir is None and not args.user and not platform.is_superuser():
        raise UsageError(
            "the nightly job for the whole machine can only be set up by root: run the command "
            "with sudo, or add --user for a job of your own (it runs while you are logged in)"
        )
    kind = "systemd" if unit_dir is not None else platform.scheduler_kind()
    place = placement(
        kind,
        user=args.user,
        home=Path.home(),
        uid=platform.user_id(),
        unit_dir=unit_dir,
        config_home=_xdg_config_home(),
    )
    if args.action == "install":
        return _install(ctx, place)
    if args.action == "remove":
        return _remove(ctx, place)
    return _show(ctx, place)


def _xdg_config_home() -> Path | None:
    value = os.environ.get("XDG_CONFIG_HOME", "")
    return Path(value) if Path(value).is_absolute() else None


# --- install ---------------------------------------------------------------------------------


def _install(ctx: Context, place: Placement) -> int:
    profile = profilearg.load(ctx.args.profile)
    if profile.repository.password_file is None and profile.repository.password_command is None:
        ctx.warn(
            f"the profile {profile.path} names no password-file or password-command in "
            "[repository]: the nightly job will find no password and stop (exit 12). Add "
            'password-file = "/etc/dedupe/password" (a file only root can read) to it'
        )
    program = dedupe_program(sys.argv[0], sys.executable)
    _check_startable(ctx, program)
    job = make_job(program, profile.path, ctx.args.at, user=place.user, quiet=place.kind == "cron")
    if place.crontab:
        _write_crontab(crontab_with(_read_crontab(), job), f"the line {shlex.join(job.argv)}")
    else:
        refuse_foreign(place)
        if installed(place):
            _run_all(place.deactivate, must_succeed=False)  # launchd: unload the old one first
        write(files_for(place, job))
    pending = [] if place.unit_dir else _run_all(place.activate, must_succeed=True)
    when = next_run(job.hour, job.minute, datetime.now().astimezone())
    if ctx.json:
        ctx.emit_json(
            {
                "scheduler": place.kind,
                "user": place.user,
                "files": [str(path) for path in place.files],
                "crontab": place.crontab,
                "command": list(job.argv),
                "at": job.at,
                "next_run": when.isoformat(timespec="seconds"),
                "last_run": place.last_run,
                "to_run": [shlex.join(command) for command in pending],
            }
        )
        return 0
    for path in place.files:
        ctx.done(f"wrote {path}")
    if place.crontab:
        ctx.done("added the job to your crontab ('crontab -l' shows it)")
    ctx.done(f"runs: {shlex.join(job.argv)}")
    ctx.done(f"every night at {job.at}; next: {when:%Y-%m-%d %H:%M} (if the machine is on)")
    ctx.done(f"to see the last run: {place.last_run}")
    for hint in place.hints:
        ctx.out(hint)
    if pending:
        ctx.out("the scheduler's tool is not on this machine; to start the job, run:")
        for command in pending:
            ctx.out(f"  {shlex.join(command)}")
    if place.kind == "cron" and not (platform.has_tool("cron") or platform.has_tool("crond")):
        ctx.warn("no cron daemon was found on this machine: install cron, or the job never runs")
    return 0


def _check_startable(ctx: Context, program: list[str]) -> None:
    """Warn when a scheduler could not start `program`: it runs it from / without our
    PYTHONPATH (dedupe run from a source folder, not installed)."""
    run = platform.run_tool([*program, "--version"], cwd="/", unset=("PYTHONPATH",))
    if run is None or run.returncode != 0:
        ctx.warn(
            f"'{shlex.join(program)}' does not start outside this shell (is dedupe installed "
            "for this Python, not only run from its source folder?): the scheduler could not "
            "start the job. Install dedupe (pip install .), then run this command again"
        )


def _read_crontab() -> str:
    if not platform.has_tool("crontab"):
        raise DedupeError(
            "the crontab tool is not on this machine, so no job was installed. Install cron "
            "(for example 'apt-get install cron'), or run 'dedupe schedule install --unit-dir "
            "DIR' to write systemd units"
        )
    run = platform.run_tool(["crontab", "-l"])
    if run is None:
        raise DedupeError("'crontab -l' could not be run; nothing was changed")
    if run.returncode != 0:
        if "no crontab" in run.stderr.lower():
            return ""
        raise DedupeError(f"'crontab -l' failed: {run.stderr.strip()}; nothing was changed")
    return run.stdout


def _write_crontab(text: str, what: str) -> None:
    run = platform.run_tool(["crontab", "-"], stdin_text=text)
    if run is None or run.returncode != 0:
        why = "it could not be run" if run is None else run.stderr.strip()
        raise DedupeError(f"'crontab -' refused {what}: {why}; your crontab is unchanged")


def _run_all(commands: Sequence[Sequence[str]], *, must_succeed: bool) -> list[Sequence[str]]:
    """Run each command; those whose tool is missing are returned (to print). A failure is a
    DedupeError when `must_succeed`, else ignored (stopping a job that was not running)."""
    pending: list[Sequence[str]] = []
    for command in commands:
        if not platform.has_tool(command[0]):
            pending.append(command)
            continue
        run = platform.run_tool(command)
        if must_succeed and (run is None or run.returncode != 0):
            detail = "it did not finish" if run is None else run.stderr.strip()
            raise DedupeError(
                f"the files are written, but '{shlex.join(command)}' failed: {detail}. Fix "
                "that and run it again, or 'dedupe schedule remove' to undo"
            )
    return pending


# --- remove and show -------------------------------------------------------------------------


def _remove(ctx: Context, place: Placement) -> int:
    if place.crontab:
        existing = _read_crontab()
        entry = crontab_entry(existing)
        if entry is not None:
            _write_crontab(crontab_without(existing), "the crontab without dedupe's job")
        removed = ["your crontab's line: " + entry] if entry is not None else []
    else:
        refuse_foreign(place)
        if installed(place) and not place.unit_dir:
            _run_all(place.deactivate, must_succeed=False)
        removed = [str(path) for path in remove(place)]
        if removed and not place.unit_dir:
            _run_all(place.reload, must_succeed=False)
    if ctx.json:
        ctx.emit_json({"scheduler": place.kind, "removed": removed})
    elif removed:
        for item in removed:
            ctx.done(f"removed {item}")
    else:
        ctx.done(f"no nightly job was installed ({_where(place)}); nothing to remove")
    return 0


def _show(ctx: Context, place: Placement) -> int:
    if place.crontab:
        entry = crontab_entry(_read_crontab())
        found = {} if entry is None else {Path("crontab"): entry.encode() + b"\n"}
    else:
        found = installed(place)
    at = next((scheduled_at(content) for content in found.values() if scheduled_at(content)), None)
    when = None
    if at is not None:
        when = _systemd_next(place) or next_run(*at, datetime.now().astimezone()).strftime(
            "%Y-%m-%d %H:%M"
        )
    if ctx.json:
        ctx.emit_json(
            {
                "scheduler": place.kind,
                "installed": bool(found),
                "files": {
                    str(path): content.decode("utf-8", "replace") for path, content in found.items()
                },
                "at": None if at is None else f"{at[0]:02d}:{at[1]:02d}",
                "next_run": when,
                "last_run": place.last_run if found else None,
            }
        )
        return 0
    if not found:
        ctx.out(
            f"no nightly job is installed ({_where(place)}); 'dedupe schedule install' sets one up"
        )
        return 0
    for path, content in found.items():
        ctx.out(f"--- {path}")
        ctx.out(content.decode("utf-8", "replace").rstrip("\n"))
    if when is not None:
        ctx.out(f"next run: {when} (if the machine is on)")
    ctx.out(f"to see the last run: {place.last_run}")
    return 0


def _systemd_next(place: Placement) -> str | None:
    """systemd's own word on the next start, when it runs here and knows the timer."""
    if place.kind != "systemd" or place.unit_dir or not platform.has_tool("systemctl"):
        return None
    ctl = ["systemctl", "--user"] if place.user else ["systemctl"]
    run = platform.run_tool(
        [*ctl, "show", "dedupe-run.timer", "--property=NextElapseUSecRealtime", "--value"]
    )
    if run is None or run.returncode != 0 or not run.stdout.strip():
        return None
    return run.stdout.strip()


def _where(place: Placement) -> str:
    if place.crontab:
        return "looked in your crontab"
    return "looked for " + ", ".join(str(path) for path in place.files)
