"""`dedupe run`: the nightly job of a profile (the work is dedupe.run's; this finds the profile,
gets the repository's password once, prints the summary and turns it into the exit code)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime

from dedupe.cli.context import Context, Subparsers, printable
from dedupe.cli.profilearg import load, repository_password
from dedupe.cli.timearg import parse_time
from dedupe.profile import Profile
from dedupe.run import notice
from dedupe.run.children import Children, Password
from dedupe.run.job import Job, Night
from dedupe.run.state import RunRecord, State, state_dir


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="the nightly job of a profile: back up, clean up, copy to drives and off-site",
        description="Run the nightly job of a profile (dedupe.toml): back up every source, "
        "remove backups the policy does not keep (and get the space back), copy to the drive "
        "that is plugged in and off-site, and check a slice of the data. A step that fails "
        "does not stop the others. Exit 0: all done; 3: done with warnings (a drive not "
        "plugged in, low disk, unreadable files); otherwise the exit code of the first step "
        "that failed.",
        epilog="examples:\n  dedupe run\n  dedupe run --profile /etc/dedupe/dedupe.toml "
        "--dry-run\n\nThe profile is found as --profile, $DEDUPE_PROFILE, ./dedupe.toml, "
        "~/.config/dedupe/dedupe.toml, /etc/dedupe/dedupe.toml.\nRun records and the run log "
        "live in $DEDUPE_STATE_DIR (default ~/.local/state/dedupe).",
    )
    p.add_argument("--profile", metavar="FILE", help="the profile (dedupe.toml) to run")
    p.add_argument(
        "--dry-run", "-n", action="store_true", help="say what the night would do; do nothing"
    )
    p.add_argument(
        "--time",
        metavar="ISO8601",
        help="run as if it were this time (weekday, overdue drives, snapshot times): for tests "
        "and catching up imports",
    )
    p.set_defaults(handler=cmd_run)


def cmd_run(ctx: Context) -> int:
    profile = load(ctx.args.profile)
    when = parse_time(ctx.args.time) if ctx.args.time else datetime.now().astimezone()
    state = State(state_dir(os.environ), profile.path)
    if ctx.args.dry_run:
        job = Job(profile, state, Children(os.environ), Password(), when)
        lines = job.preview()
        if ctx.json:
            ctx.emit_json({"dry_run": True, "steps": lines})
        else:
            ctx.out(f"dedupe run --dry-run: {profile.path}, {when:%a %Y-%m-%d %H:%M}")
            for line in lines:
                ctx.out(f"  would {line}")
        return 0
    secret = repository_password(profile)
    with state.exclusive():
        job = Job(
            profile,
            state,
            Children(os.environ),
            secret,
            when,
            given_time=ctx.args.time is not None,
            echo=ctx.info if sys.stderr.isatty() else lambda _text: None,
        )
        night = job.run()
        record = night.record(profile)
        for problem in _alert(profile, record, str(state.log_file)):
            record.warnings.append(problem)
            night.warnings.append(problem)
        state.save_run(record)
    if ctx.json:
        ctx.emit_json(
            {
                "ok": record.ok,
                "exit": record.exit,
                "steps": record.steps,
                "warnings": record.warnings,
            }
        )
    elif record.exit != 0 or not ctx.quiet:  # -q: a clean night prints nothing (cron mails none)
        _summary(ctx, profile, night, record.exit, state)
    return record.exit


def _alert(profile: Profile, record: RunRecord, log_file: str) -> list[str]:
    """Send the night's alert to every [alerts] URL when something failed or warned; the
    problems of sending (an alert that did not go out is itself worth a line)."""
    message = notice.compose(record, log_file)
    if message is None or not profile.alerts.urls:
        return []
    from dedupe.alerts import send_alert  # Apprise loads only when there is something to send

    title, body, level = message
    return send_alert(profile.alerts.urls, title, body, level)


def _summary(ctx: Context, profile: Profile, night: Night, code: int, state: State) -> None:
    """One table an office manager can read: each step, then warnings, then the verdict."""
    ctx.out(f"dedupe run: {night.when:%a %Y-%m-%d %H:%M}, profile {profile.path}")
    for step in night.steps:
        mark = "ok" if step.ok and not step.warned else ("WARN" if step.ok else "FAILED")
        ctx.out(f"  {mark:<7}{step.step:<9}{step.target:<14}{printable(step.message)}")
    if night.warnings:
        ctx.out("Warnings:")
        for text in night.warnings:
            ctx.out(f"  - {text}")
    failed = [step for step in night.steps if not step.ok]
    if failed:
        names = ", ".join(f"{step.step} {step.target}" for step in failed)
        ctx.out(
            f"Result: FAILED (exit {code}): {names}. The other steps were still done. "
            f"What each step printed is in {state.log_file}"
        )
    elif code == 3:
        ctx.out("Result: done, with warnings (exit 3): read the warnings above")
    else:
        ctx.out("Result: all done (exit 0)")
