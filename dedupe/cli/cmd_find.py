"""`dedupe find GLOB`: every version of the matching files across snapshots (the search is
dedupe.find's; this parses, filters the snapshots and reports).

Human output answers "which night still had the letter?": one group per path, its versions
(same content, size and modification time) newest first, each with the snapshots that hold it
and one to restore it from. `--json` is the contract's array of `{snapshot, time, path, type,
size, mtime}`, one object per file per snapshot.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from datetime import datetime

from dedupe.cli import selection
from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.errors import DamageError
from dedupe.find import Match, compile_pattern, find
from dedupe.model.tree import DIR, FILE, SYMLINK, TYPE_NAMES, Node
from dedupe.repo import manifests
from dedupe.repo.selection import filter_snapshots


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "find",
        parents=[common],
        help="every version of matching files across snapshots",
        description=(
            "Find every version of the files matching GLOB in every snapshot. GLOB matches a "
            "base name ('letter.docx', '*.docx'), or the whole path when it holds a '/' "
            "('/srv/practice/letters/*.docx', '**/letters/*.docx'). Quote it so the shell "
            "leaves * alone."
        ),
        epilog="examples:\n"
        "  dedupe find smith.docx          every version of that letter, in every snapshot\n"
        "  dedupe find '*.docx' --path /srv/practice\n"
        "  then get one back: dedupe restore SNAP --target /tmp/r --include /full/path\n",
    )
    p.add_argument("glob", metavar="GLOB", help="a name or pattern: smith.docx, '*.docx'")
    selection.add_filter_arguments(p)
    p.set_defaults(handler=cmd_find)


def _mtime(node: Node) -> datetime:
    return datetime.fromtimestamp(node.mtime_ns / 1e9).astimezone()


def cmd_find(ctx: Context) -> int:
    pattern = compile_pattern(ctx.args.glob)  # a bad glob is exit 2 before the password
    flt = selection.snapshot_filter(ctx.args)
    repo = ctx.repo()
    broken: list[str] = []
    snaps = filter_snapshots(manifests.load_all(repo, broken), flt)
    bar = ctx.progress_bar(len(snaps), "find", unit="snapshots")
    try:
        result = find(repo, snaps, pattern, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if ctx.json:
        ctx.emit_json(
            [
                {
                    "snapshot": m.snapshot.id,
                    "time": m.snapshot.time.isoformat(),
                    "path": os.fsdecode(m.path),
                    "type": TYPE_NAMES[m.node.type],
                    "size": m.node.size if m.node.type == FILE else 0,
                    "mtime": _mtime(m.node).isoformat(),
                }
                for m in result.matches
            ]
        )
    else:
        _print_groups(ctx, result.matches)
        where = f" matching {flt.describe()}" if flt.active else ""
        if not result.matches:
            ctx.out(f"nothing matches {pattern.text!r} in {len(result.searched)} snapshots{where}")
        else:
            paths = len({m.path for m in result.matches})
            ctx.out(
                f"{paths} {'path matches' if paths == 1 else 'paths match'} {pattern.text!r} in "
                f"{len({m.snapshot.id for m in result.matches})} of {len(result.searched)} "
                f"snapshots{where}. To get a version back: dedupe restore SNAP --target DIR "
                "--include PATH, or dedupe cat SNAP PATH > FILE"
            )
    broken += [f"snapshot {s.short_id()} could not be searched: {why}" for s, why in result.damaged]
    for text in broken:
        ctx.warn(text)
    if broken:
        raise DamageError(
            f"{len(broken)} snapshot(s) could not be searched, so versions in them are not "
            "listed; run 'dedupe check' (the other snapshots' results above are complete)"
        )
    return 0


@dataclass
class _Version:
    node: Node
    snapshots: list[Match] = field(default_factory=list)


def _version_key(node: Node) -> tuple[object, ...]:
    """What makes two entries the same version: what a restore would bring back."""
    return (node.type, node.size, node.content, node.target, node.mtime_ns)


def _print_groups(ctx: Context, matches: list[Match]) -> None:
    """One group per path, its versions newest first (by the newest snapshot holding each)."""
    by_path: dict[bytes, dict[tuple[object, ...], _Version]] = {}
    for m in matches:
        same_path = by_path.setdefault(m.path, {})
        same_path.setdefault(_version_key(m.node), _Version(m.node)).snapshots.append(m)
    for path in sorted(by_path):
        versions = sorted(
            by_path[path].values(),
            key=lambda v: (v.snapshots[-1].snapshot.time, v.node.mtime_ns),
            reverse=True,
        )
        count = sum(len(v.snapshots) for v in versions)
        newest = versions[0].snapshots[-1].snapshot
        plural = "version" if len(versions) == 1 else "versions"
        ctx.out(
            f"{os.fsdecode(path)}: {len(versions)} {plural} in {count} snapshot"
            f"{'' if count == 1 else 's'}, newest in {newest.short_id()} "
            f"({_when(newest.time)})"
        )
        for version in versions:
            ctx.out("  " + _version_line(version))


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _version_line(version: _Version) -> str:
    node = version.node
    if node.type == FILE:
        what = f"{human_bytes(node.size):>10}"
    elif node.type == DIR:
        what = f"{'folder':>10}"
    elif node.type == SYMLINK:
        what = f"-> {os.fsdecode(node.target or b'')}"
    else:
        what = TYPE_NAMES.get(node.type, "?")
    held = version.snapshots
    first, last = held[0].snapshot, held[-1].snapshot
    span = (
        f"in {last.short_id()} ({_when(last.time)})"
        if len(held) == 1
        else f"in {len(held)} snapshots, {_when(first.time)} to {_when(last.time)}, newest "
        f"{last.short_id()}"
    )
    return f"modified {_when(_mtime(node))}  {what}  {span}"
