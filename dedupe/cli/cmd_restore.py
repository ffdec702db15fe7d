"""`dedupe restore`: put a snapshot's files back under a target folder (the work is
dedupe.restore's; this parses, resolves the snapshot and reports)."""

from __future__ import annotations

import argparse
import os

from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.repo import manifests, treewalk
from dedupe.restore.restorer import RestoreIncomplete, Restorer


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("restore", parents=[common], help="restore a snapshot under a folder")
    p.add_argument("snapshot", metavar="SNAP")
    p.add_argument("--target", required=True, metavar="DIR")
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="restore only this path (repeatable)",
    )
    p.set_defaults(handler=cmd_restore)


def cmd_restore(ctx: Context) -> int:
    repo = ctx.repo()
    snap = manifests.resolve(repo, ctx.args.snapshot)
    includes = []
    for inc in ctx.args.include:
        full, _node = treewalk.find(repo, snap.tree, inc)
        includes.append(full)
    total = snap.summary.get("bytes_total") if not includes else None
    bar = ctx.progress_bar(total, "restore")
    restorer = Restorer(
        repo,
        ctx.args.target,
        workers=max(2, os.cpu_count() or 2),
        progress=bar.update if bar is not None else None,
        warn=ctx.warn,
    )
    incomplete = None
    try:
        stats = restorer.restore(snap.tree, includes)
    except RestoreIncomplete as exc:  # everything intact was restored; report, then exit 14
        incomplete, stats = exc, exc.stats
    finally:
        if bar is not None:
            bar.close()
    if ctx.json:
        ctx.emit_json(
            {
                "id": snap.id,
                "files": stats.files,
                "dirs": stats.dirs,
                "symlinks": stats.symlinks,
                "bytes_written": stats.bytes_written,
                "failed": [
                    {"path": path, "type": kind, "reason": why}
                    for kind, items in (
                        ("file", stats.damaged_files),
                        ("dir", stats.damaged_folders),
                    )
                    for path, why in items
                ],
            }
        )
    else:
        ctx.out(
            f"restored {stats.files} files, {stats.dirs} folders, {stats.symlinks} symlinks "
            f"({human_bytes(stats.bytes_written)}) from {snap.short_id()} to {ctx.args.target}"
        )
    if incomplete is not None:
        raise incomplete
    return 0
