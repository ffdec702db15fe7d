"""`dedupe gc`: delete data no snapshot references and recover the disk space
(`dedupe.gc.collect`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.cli.policy_args import parse_max_unused
from dedupe.errors import DamageError, UsageError
from dedupe.gc import collect
from dedupe.repo import journal


def parse_count(text: str) -> int:
    """A snapshot count for --accept-snapshot-count: a whole number, 0 or more."""
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(
            f"invalid --accept-snapshot-count {text!r}: give the number of snapshots gc found, "
            "e.g. 12"
        )
    return value


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "gc",
        parents=[common],
        help="delete data no snapshot references and recover the disk space",
        description=(
            "Delete data no snapshot references. Packs with no used data are deleted first "
            "(that needs no free space); packs with more than --max-unused percent unused are "
            "rewritten, as far as the free space allows. Safe to interrupt: run it again. "
            "gc deletes nothing when it finds no snapshot at all, or far fewer than when they "
            "were last counted (a failing disk can hide them), unless you confirm it with "
            "--allow-empty or --accept-snapshot-count. Data written in the last 24 hours that "
            "no index names yet is kept: a backup may still be writing it."
        ),
    )
    p.add_argument(
        "--dry-run", action="store_true", help="show what would be freed, change nothing"
    )
    p.add_argument(
        "--max-unused",
        default="10",
        metavar="PCT",
        help="rewrite packs with more than PCT percent unused (default 10; 0 reclaims everything)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="delete all backup data even though no snapshot exists (only if you really "
        "removed every snapshot)",
    )
    p.add_argument(
        "--accept-snapshot-count",
        metavar="N",
        help="go ahead although only N snapshots remain of many more counted before (after "
        "removing snapshots by hand); gc still stops if it finds any other number",
    )
    p.set_defaults(handler=cmd_gc)


def cmd_gc(ctx: Context) -> int:
    max_unused = parse_max_unused(ctx.args.max_unused)
    accept = ctx.args.accept_snapshot_count
    accept_count = None if accept is None else parse_count(accept)
    repo = ctx.repo()
    bars: dict[str, object] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            for other in bars.values():
                if other is not None:
                    other.close()  # type: ignore[attr-defined]
            unit = "B" if phase == "repack" else (" trees" if phase == "mark" else " packs")
            bar = bars[phase] = ctx.progress_bar(total or None, f"gc {phase}", unit)
        if bar is not None:
            bar.n = done  # type: ignore[attr-defined]
            bar.refresh()  # type: ignore[attr-defined]

    try:
        result = collect.run(
            repo,
            max_unused,
            ctx.args.dry_run,
            progress,
            allow_empty=ctx.args.allow_empty,
            accept_snapshot_count=accept_count,
            command=journal.command_line(sys.argv[1:]),
        )
    finally:
        for bar in bars.values():
            if bar is not None:
                bar.close()  # type: ignore[attr-defined]
    if ctx.json:
        ctx.emit_json(dataclasses.asdict(result))
    else:
        _print_summary(ctx, result)
    if result.damaged_packs:
        raise DamageError(
            f"{len(result.damaged_packs)} pack(s) could not be read or verified and were left "
            "alone; run 'dedupe check --read-data'"
        )
    return 0


def _print_summary(ctx: Context, r: collect.GcResult) -> None:
    verb = "would free" if r.dry_run else "freed"
    ctx.out(
        f"{verb} {human_bytes(r.freed_bytes)}: {human_bytes(r.stored_bytes_before)} -> "
        f"{human_bytes(r.stored_bytes_after)}"
    )
    ctx.out(
        f"packs {'to delete' if r.dry_run else 'deleted'}: {r.packs_deleted}, "
        f"{'to rewrite' if r.dry_run else 'rewritten'}: {r.packs_rewritten}"
        + ("" if r.dry_run else f" (into {r.packs_written} new, {human_bytes(r.bytes_written)})")
    )
    ctx.out(f"still unused: {human_bytes(r.unused_bytes)} (below --max-unused or left for space)")
    if r.packs_left_for_space:
        ctx.out(
            f"{r.packs_left_for_space} pack(s) were not rewritten for lack of free space; run "
            "gc again once there is room, or lower what the repository holds"
        )
    if r.packs_kept_young:
        ctx.out(
            f"kept {r.packs_kept_young} pack(s) written in the last 24 hours that no index names "
            "yet (a backup may still be writing them); a later gc deletes them if unused"
        )
    if r.missing_blobs:
        ctx.warn(
            f"{r.missing_blobs} chunk(s) that snapshots reference are in no pack; "
            "run 'dedupe check'"
        )
    if r.dry_run:
        ctx.out("dry run: nothing was changed")
