"""`dedupe restore`: put a snapshot's files back under a target folder (the work is
dedupe.restore's; this parses, resolves the snapshot and reports).

`--exclude` reads patterns with the snapshot command's own matcher
(`dedupe.backup.walkparts.Excluder`), handed to the restore as a predicate: the two commands
cannot read one pattern two ways, and the restore package does not import the backup package.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from typing import Any

from dedupe.backup.walkparts import Excluder
from dedupe.cli import selection
from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.errors import UsageError
from dedupe.model.snapshot import Snapshot
from dedupe.repo.readlock import shared_lock
from dedupe.restore.dryrun import DryRunTotals, Planned, preview
from dedupe.restore.existing import DEFAULT_MODE, MODES, UNCHANGED
from dedupe.restore.outcome import RestoreStats
from dedupe.restore.restorer import RestoreBlocked, RestoreIncomplete, Restorer
from dedupe.restore.steps import Excluded, selected_bytes

EXAMPLES = """\
examples:
  See first what would happen, then restore one folder of last night's backup into a new
  folder (each file lands under its full path, here /tmp/restored/srv/practice/letters/...):
    dedupe restore latest --target /tmp/restored --include /srv/practice/letters --dry-run
    dedupe restore latest --target /tmp/restored --include /srv/practice/letters --verify

  Put the practice folder back where it was, leaving temporary files out and keeping any file
  that has been changed since the backup:
    dedupe restore latest --target / --include /srv/practice --exclude '*.tmp' \\
        --overwrite if-newer

  An older version: find the snapshot that has it with 'dedupe find letter-smith.docx' (or
  'dedupe snapshots'), and give its id instead of latest.

exit codes: 0 all restored; 1 a folder in the target stands where a file goes (named; the rest
is restored); 2 wrong usage; 14 some files could not be restored (damaged backup data) or did
not read back right (--verify): each is named, everything else was restored.
"""

OVERWRITE_HELP = (
    "what to do with a file that is already in the target folder. if-changed (the default): "
    "replace it only if its content differs from the backup (a file with the backup's size "
    "and modification time is taken as right, unless --verify is given), so running a restore "
    "again after it was interrupted only writes what is missing or wrong; always: replace "
    "every file (slower: each replaced file is flushed to disk before it takes the old one's "
    "place); if-newer: replace it only if the backup's copy is newer, keeping files "
    "changed since the backup; never: keep every file that is there. Whatever the choice, a "
    "file is replaced in one step: an interrupted restore never leaves a half-written file"
)


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "restore",
        parents=[common],
        help="restore a snapshot under a folder",
        description="Copy files from a snapshot back to disk. Nothing is ever written outside "
        "the --target folder.",
        epilog=EXAMPLES,
    )
    p.add_argument(
        "snapshot", metavar="SNAP", help="a snapshot id (or its first digits), or latest"
    )
    p.add_argument(
        "--target",
        required=True,
        metavar="DIR",
        help="the folder to restore into; each file lands under its full original path",
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="restore only this file or folder, by its full path in the snapshot (repeatable)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out matching files and folders, as 'dedupe snapshot --exclude' does: a "
        "pattern without / matches a name anywhere ('*.tmp'), one with / the full path "
        "('/srv/practice/cache') (repeatable)",
    )
    p.add_argument(
        "--overwrite",
        choices=MODES,
        default=DEFAULT_MODE,
        metavar="|".join(MODES),
        help=OVERWRITE_HELP,
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only list what would be created, replaced and left alone; nothing on disk changes",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="read every restored file back and compare it with the backup (slower; a file "
        "that does not match is named and the exit code is 14)",
    )
    selection.add_filter_arguments(p)
    p.set_defaults(handler=cmd_restore)


def _check_usage(ctx: Context) -> None:
    args = ctx.args
    if any(not pattern.strip() for pattern in args.exclude):
        raise UsageError("--exclude needs a pattern, such as '*.tmp' or '/srv/practice/cache'")
    if args.dry_run and args.verify:
        raise UsageError(
            "--verify reads back what a restore wrote, and --dry-run writes nothing: "
            "give one of them"
        )
    if os.path.lexists(args.target) and not os.path.isdir(args.target):
        raise UsageError(
            f"--target {args.target} is a file, not a folder: give a folder to restore into "
            "(it is created if it does not exist)"
        )


def cmd_restore(ctx: Context) -> int:
    _check_usage(ctx)
    repo = ctx.repo()
    # `latest` is the newest snapshot (under --host/--tag/--path) holding every --include.
    chosen = selection.resolve(ctx, repo, ctx.args.snapshot, ctx.args.include)
    snap = chosen.snapshot
    includes = [full for full, _node in chosen.found]
    matcher = Excluder(ctx.args.exclude)
    excluded: Excluded | None = matcher.excluded if matcher.active else None
    if ctx.args.dry_run:
        return _dry_run(ctx, snap, includes, excluded)
    bar = ctx.progress_bar(None, "restore")
    if bar is not None:  # the total costs a walk over the trees when filtered: only for a bar
        bar.total = _total(ctx, snap, includes, excluded)
        bar.refresh()
    restorer = Restorer(
        repo,
        ctx.args.target,
        workers=max(2, os.cpu_count() or 2),
        progress=bar.update if bar is not None else None,
        warn=ctx.warn,
        overwrite=ctx.args.overwrite,
        excluded=excluded,
        verify=ctx.args.verify,
    )
    incomplete: RestoreIncomplete | RestoreBlocked | None = None
    try:
        with shared_lock(repo, ctx.warn, "the restore"):
            stats = restorer.restore(snap.tree, includes)
    except (RestoreIncomplete, RestoreBlocked) as exc:  # the rest was restored: report, raise
        incomplete, stats = exc, exc.stats
    finally:
        if bar is not None:
            bar.close()
    if ctx.json:
        ctx.emit_json(_json_report(ctx, snap, stats))
    else:
        say = ctx.out if incomplete is not None else ctx.done  # -q: silent when all went well
        for line in _summary(ctx, snap, stats):
            say(line)
    if incomplete is not None:
        raise incomplete
    return 0


def _total(
    ctx: Context, snap: Snapshot, includes: list[bytes], excluded: Excluded | None
) -> int | None:
    """The progress bar's total: the snapshot's recorded size, or with --include/--exclude
    the size of what they select."""
    if not includes and excluded is None:
        recorded = snap.summary.get("bytes_total")
        if isinstance(recorded, int):
            return recorded
    return selected_bytes(ctx.repo(), snap.tree, includes, excluded)


def _when(snap: Snapshot) -> str:
    return datetime.fromtimestamp(snap.time.timestamp()).strftime("%Y-%m-%d %H:%M")


def _json_report(ctx: Context, snap: Snapshot, stats: RestoreStats) -> dict[str, Any]:
    return {
        "id": snap.id,
        "target": ctx.args.target,
        "overwrite": ctx.args.overwrite,
        "files": stats.files,
        "dirs": stats.dirs,
        "symlinks": stats.symlinks,
        "bytes_written": stats.bytes_written,
        "created": stats.created,
        "overwritten": stats.overwritten,
        "unchanged": stats.unchanged,
        "kept": stats.kept,
        "verified": stats.verified if ctx.args.verify else None,
        "mismatched": [{"path": path, "reason": why} for path, why in stats.mismatched],
        "failed": [
            {"path": path, "type": kind, "reason": why}
            for kind, items in (
                ("file", stats.damaged_files),
                ("dir", stats.damaged_folders),
                ("file", stats.blocked),
            )
            for path, why in items
        ],
    }


def _summary(ctx: Context, snap: Snapshot, stats: RestoreStats) -> list[str]:
    """What an office manager reads at the end: what came back, what was left alone and why,
    and whether the read-back check passed."""
    source = f"snapshot {snap.short_id()} ({_when(snap)})"
    wrote = stats.files or stats.symlinks
    if wrote or not (stats.unchanged or stats.kept) or stats.blocked or stats.damaged:
        lines = [
            f"restored {stats.files} files, {stats.dirs} folders, {stats.symlinks} symlinks "
            f"({human_bytes(stats.bytes_written)}) from {source} to {ctx.args.target}"
        ]
    else:
        lines = [f"nothing needed to be written to {ctx.args.target} from {source}"]
    if stats.overwritten:
        lines.append(f"  {stats.created} were new, {stats.overwritten} replaced an older copy")
    if stats.unchanged:
        lines.append(f"  {stats.unchanged} already matched the backup and were left as they were")
    if stats.kept:
        lines.append(
            f"  {stats.kept} already there were kept as they are (--overwrite {ctx.args.overwrite})"
        )
    if ctx.args.verify:
        if stats.mismatched:
            lines.append(f"  check: {len(stats.mismatched)} did NOT match the backup (see above)")
        else:
            lines.append(f"  check: all {stats.verified} read back match the backup")
    return lines


# --- the dry run ---------------------------------------------------------------------------

_VERBS = {
    "create": "would create",
    "overwrite": "would replace",
    "skip": "would leave",
    "conflict": "cannot restore",
    "fail": "cannot restore",
    "exists": "exists",
}


def _dry_run(ctx: Context, snap: Snapshot, includes: list[bytes], excluded: Excluded | None) -> int:
    totals = DryRunTotals()
    items: list[dict[str, Any]] = []
    for item in preview(
        ctx.repo(),
        snap.tree,
        ctx.args.target,
        includes,
        overwrite=ctx.args.overwrite,
        excluded=excluded,
    ):
        totals.add(item)
        if ctx.json:
            items.append(item._asdict())
        elif _worth_a_line(item):
            ctx.out(_dry_line(item))
        if item.action in ("conflict", "fail"):
            ctx.warn(f"{item.path}: {item.reason}")
    if ctx.json:
        ctx.emit_json(
            {
                "dry_run": True,
                "id": snap.id,
                "target": ctx.args.target,
                "overwrite": ctx.args.overwrite,
                "counts": {
                    "create": totals.create,
                    "overwrite": totals.overwrite,
                    "skip": totals.skip,
                    "conflict": totals.conflict + totals.fail,
                },
                "bytes_to_write": totals.bytes_to_write,
                "items": items,
            }
        )
        return 0
    unchanged = totals.skipped_because.get(UNCHANGED, 0)
    ctx.out(
        f"dry run, nothing was changed: restoring {snap.short_id()} ({_when(snap)}) to "
        f"{ctx.args.target} would create {totals.create} files, replace {totals.overwrite} "
        f"and leave {totals.skip} as they are ({unchanged} already match the backup), "
        f"writing {human_bytes(totals.bytes_to_write)}"
    )
    if totals.conflict or totals.fail:
        ctx.out(f"{totals.conflict + totals.fail} could not be restored (see the warnings)")
    return 0


def _worth_a_line(item: Planned) -> bool:
    """Human output lists what would change or be refused; files that already match the
    backup, and folders, are only counted (--json lists everything)."""
    if item.type == "dir":
        return item.action not in ("exists", "create")
    return not (item.action == "skip" and item.reason == UNCHANGED)


def _dry_line(item: Planned) -> str:
    reason = f" ({item.reason})" if item.reason else ""
    size = f"  {human_bytes(item.size)}" if item.type == "file" and item.action != "skip" else ""
    kind = "" if item.type == "file" else f"{item.type} "
    return f"{_VERBS[item.action]} {kind}{item.path}{size}{reason}"
