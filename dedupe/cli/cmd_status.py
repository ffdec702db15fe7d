"""`dedupe status`: every destination of the profile at a glance (the rows are dedupe.run's)."""

from __future__ import annotations

import argparse
import os
from datetime import datetime

from dedupe.cli.context import Context, Subparsers, human_bytes, printable
from dedupe.cli.profilearg import load, medium_password, repository_password
from dedupe.run.children import Children
from dedupe.run.media import profile_media
from dedupe.run.state import State, state_dir
from dedupe.run.status import destinations, last_run_json


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "status",
        parents=[common],
        help="is every backup copy up to date? (the profile's repository, drives, off-site)",
        description="Show every destination of the profile: plugged in or not, its newest "
        "backup and how old it is, overdue or not, free space; and how the last run ended. "
        "A drive that is unplugged is shown from the last run's record. Exit 0 when nothing "
        "is overdue, 3 when something is.",
        epilog="examples:\n  dedupe status\n  dedupe status --profile /etc/dedupe/dedupe.toml "
        "--json",
    )
    p.add_argument("--profile", metavar="FILE", help="the profile (dedupe.toml)")
    p.set_defaults(handler=cmd_status)


def cmd_status(ctx: Context) -> int:
    profile = load(ctx.args.profile)
    state = State(state_dir(os.environ), profile.path)
    records = state.media()
    repository = repository_password(profile)
    passwords = {
        medium.name: medium_password(medium, repository)
        for medium in profile_media(profile, {}, records)
    }
    rows = destinations(
        profile, state, Children(os.environ), passwords, datetime.now().astimezone()
    )
    last = state.last_run()
    overdue = any(row.overdue for row in rows)
    if ctx.json:
        ctx.emit_json(
            {"destinations": [row.as_json() for row in rows], "last_run": last_run_json(last)}
        )
        return 3 if overdue else 0
    ctx.out(
        f"{'NAME':<12} {'KIND':<10} {'ATTACHED':<9} {'NEWEST BACKUP':<17} {'AGE':>6} "
        f"{'FREE':>10}  STATE"
    )
    for row in rows:
        newest = row.last_snapshot[:16].replace("T", " ") if row.last_snapshot else "none"
        age = f"{row.age_days:.1f}d" if row.age_days is not None else "-"
        free = human_bytes(row.free_bytes) if row.free_bytes is not None else "-"
        state_text = "OVERDUE" if row.overdue else "ok"
        ctx.out(
            f"{printable(row.name)[:12]:<12} {row.kind:<10} {'yes' if row.attached else 'no':<9} "
            f"{newest:<17} {age:>6} {free:>10}  {state_text}: {printable(row.note)}"
        )
    if last is None:
        ctx.out("Last run: none recorded yet")
    else:
        verdict = (
            "all done" if last.exit == 0 else ("done with warnings" if last.exit == 3 else "FAILED")
        )
        ctx.out(f"Last run: {last.time[:16].replace('T', ' ')}, {verdict} (exit {last.exit})")
    return 3 if overdue else 0
