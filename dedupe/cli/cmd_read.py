"""Reading back: snapshots, ls, cat, diff (restore: cmd_restore)."""

from __future__ import annotations

import argparse
import itertools
import os
import stat
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from dedupe.cli import selection
from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.errors import DamageError, UsageError
from dedupe.model.tree import DIR, FILE, SYMLINK, TYPE_NAMES, Node
from dedupe.repo import manifests, treewalk
from dedupe.repo.selection import filter_snapshots

SNAP_HELP = "a snapshot: its id (or its first 4+ digits), or latest"


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "snapshots",
        parents=[common],
        help="list snapshots",
        description="List the snapshots (the backups) in the repository: id, time, computer, "
        "size, whether it is held, and what was backed up. Newest last.",
        epilog="examples:\n"
        "  dedupe snapshots                         every snapshot\n"
        "  dedupe snapshots --path /srv/practice    only the backups of that folder\n"
        "  dedupe snapshots --json                  for a script\n",
    )
    selection.add_filter_arguments(p)
    p.set_defaults(handler=cmd_snapshots)

    p = sub.add_parser(
        "ls",
        parents=[common],
        help="list the files of a snapshot",
        description="List the files and folders in a snapshot, with their full original paths "
        "(everything, or one folder). With 'latest' and a PATH, the newest snapshot that holds "
        "that PATH is used.",
        epilog="examples:\n"
        "  dedupe ls latest /srv/practice/letters   what last night's backup holds there\n"
        "  dedupe ls 3f2a91c0 | grep smith          search one snapshot for a name\n"
        "  ('dedupe find' searches every snapshot at once)\n",
    )
    p.add_argument("snapshot", metavar="SNAP", help=SNAP_HELP)
    p.add_argument(
        "path",
        nargs="?",
        default="/",
        metavar="PATH",
        help="a folder or file in the snapshot, by its full path (default: everything)",
    )
    selection.add_filter_arguments(p)
    p.set_defaults(handler=cmd_ls)

    p = sub.add_parser(
        "cat",
        parents=[common],
        help="write one file of a snapshot to stdout",
        description="Write one backed-up file to standard output, e.g. to put a database dump "
        "back. A stream saved with --stdin-name NAME is the file /NAME.",
        epilog="examples:\n"
        "  dedupe cat latest practice.sql | psql practice     put last night's dump back\n"
        "  dedupe cat latest /srv/practice/letters/smith.docx > /tmp/smith.docx\n",
    )
    p.add_argument("snapshot", metavar="SNAP", help=SNAP_HELP)
    p.add_argument("path", metavar="PATH", help="the file, by its full path (or a stream's NAME)")
    selection.add_filter_arguments(p)
    p.set_defaults(handler=cmd_cat)

    p = sub.add_parser(
        "diff",
        parents=[common],
        help="compare two snapshots",
        description="List what was added (+), removed (-) and changed (M) between two "
        "snapshots, by full path.",
        epilog="example:\n  dedupe diff 3f2a91c0 latest       what changed since that backup\n",
    )
    p.add_argument("first", metavar="SNAP1", help="the older snapshot")
    p.add_argument("second", metavar="SNAP2", help="the newer snapshot")
    selection.add_filter_arguments(p)
    p.set_defaults(handler=cmd_diff)


def _text(path: bytes) -> str:
    return os.fsdecode(path)


def cmd_snapshots(ctx: Context) -> int:
    repo = ctx.repo()
    damaged: list[str] = []
    flt = selection.snapshot_filter(ctx.args)
    snaps = manifests.load_all(repo, damaged)
    total = len(snaps)
    snaps = filter_snapshots(snaps, flt)
    if ctx.json:
        ctx.emit_json(
            [
                {
                    "id": s.id,
                    "time": s.time.isoformat(),
                    "host": s.host,
                    "paths": s.display_paths(),
                    "tags": list(s.tags),
                    "held": s.held,
                    "hold_reason": s.hold_reason,
                    "size": s.summary.get("bytes_total"),
                    "files": s.summary.get("files"),
                }
                for s in snaps
            ]
        )
    else:
        ctx.out(f"{'ID':<8}  {'TIME':<25}  {'HOST':<12}  {'SIZE':>10}  HELD  TAGS / PATHS")
        for s in snaps:
            size = s.summary.get("bytes_total")
            held = "held" if s.held else "    "
            tags = ",".join(s.tags)
            ctx.out(
                f"{s.short_id():<8}  {s.time.isoformat(timespec='seconds'):<25}  "
                f"{s.host[:12]:<12}  {human_bytes(size) if size is not None else '?':>10}  "
                f"{held}  {tags + ' ' if tags else ''}{' '.join(s.display_paths())}"
            )
        if flt.active:
            ctx.done(f"{len(snaps)} of {total} snapshots match {flt.describe()}")
        else:
            ctx.done(f"{len(snaps)} snapshots")
    for text in damaged:
        ctx.warn(text)
    if damaged:
        raise DamageError(f"{len(damaged)} snapshot manifest(s) are damaged; run 'dedupe check'")
    return 0


def cmd_ls(ctx: Context) -> int:
    repo = ctx.repo()
    chosen = selection.resolve(ctx, repo, ctx.args.snapshot, [ctx.args.path])
    snap = chosen.snapshot
    treewalk.count_entries(repo, snap.tree)  # refuse exploding (hostile) trees up front
    ((base, node),) = chosen.found
    entries: Iterable[tuple[bytes, Node]]
    if node is None:
        entries = treewalk.walk(repo, snap.tree)
    elif node.type == DIR and node.subtree is not None:
        entries = itertools.chain([(base, node)], treewalk.walk(repo, node.subtree, base))
    else:
        entries = [(base, node)]
    items = []
    for path, n in entries:
        item: dict[str, Any] = {
            "path": _text(path),
            "type": TYPE_NAMES[n.type],
            "size": n.size if n.type == FILE else 0,
            "mode": n.mode,
            "mtime": datetime.fromtimestamp(n.mtime_ns / 1e9).astimezone().isoformat(),
        }
        if ctx.json:
            items.append(item)
        else:
            kind = {"file": "-", "dir": "d", "symlink": "l"}[item["type"]]
            perms = stat.filemode(n.mode)[1:]
            suffix = f" -> {_text(n.target)}" if n.target else ""
            ctx.out(f"{kind}{perms} {item['size']:>12} {item['mtime'][:19]} {item['path']}{suffix}")
    if ctx.json:
        ctx.emit_json(items)
    return 0


def cmd_cat(ctx: Context) -> int:
    repo = ctx.repo()
    chosen = selection.resolve(ctx, repo, ctx.args.snapshot, [ctx.args.path])
    ((path, node),) = chosen.found
    if node is None or node.type != FILE:
        kinds = {DIR: "a folder", SYMLINK: "a symbolic link"}
        kind = "the root folder" if node is None else kinds.get(node.type, "not a plain file")
        raise UsageError(
            f"{_text(path)}: is {kind}, not a file, in {chosen.describe()}; cat writes one "
            f"file: 'dedupe ls {chosen.snapshot.short_id()} {_text(path)}' lists what is there"
        )
    out = sys.stdout.buffer
    written = 0
    with ThreadPoolExecutor(2) as pool:
        window = []
        ids = list(node.content)
        for i, blob_id in enumerate(ids):
            window.append(pool.submit(repo.read_blob, blob_id))
            if len(window) >= 16 or i == len(ids) - 1:
                for fut in window:
                    try:
                        data = fut.result()
                    except DamageError as exc:
                        out.flush()
                        for later in window:
                            later.cancel()
                        raise DamageError(_cat_damage(path, written, str(exc))) from None
                    out.write(data)
                    written += len(data)
                window = []
    out.flush()
    if written != node.size:
        raise DamageError(
            _cat_damage(path, written, f"its content size does not match ({node.size} recorded)")
        )
    return 0


def _cat_damage(path: bytes, written: int, why: str) -> str:
    return (
        f"cannot read {_text(path)}: the backup data is damaged, so the output stopped after "
        f"{written} bytes and is incomplete; do not use it. Restore this file from another copy "
        f"(a rotating drive or the off-site copy) and run 'dedupe check --read-data'. ({why})"
    )


def cmd_diff(ctx: Context) -> int:
    repo = ctx.repo()
    first = selection.resolve(ctx, repo, ctx.args.first).snapshot
    second = selection.resolve(ctx, repo, ctx.args.second).snapshot
    for snap in (first, second):
        treewalk.count_entries(repo, snap.tree)  # refuse exploding (hostile) trees up front
    changes = list(treewalk.diff(repo, first.tree, second.tree))
    if ctx.json:
        kinds = {"+": "added", "-": "removed", "M": "changed"}
        ctx.emit_json(
            {"added": [], "removed": [], "changed": []}
            | {kinds[k]: [_text(p) for s, p in changes if s == k] for k in kinds}
        )
    else:
        for sign, path in changes:
            ctx.out(f"{sign} {_text(path)}")
        counts = {k: sum(1 for s, _ in changes if s == k) for k in "+-M"}
        ctx.done(f"{counts['+']} added, {counts['-']} removed, {counts['M']} changed")
    return 0
