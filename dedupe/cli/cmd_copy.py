"""`dedupe copy --to URL [SNAP...]`: copy snapshots the destination lacks into it.

The destination must already exist (`dedupe init` it once): a missing one is exit 10 and nothing
is created, so a copy never fills the empty mount point of an unplugged drive. Its password comes
from DEDUPE_TO_PASSWORD_FILE, DEDUPE_TO_PASSWORD_COMMAND or DEDUPE_TO_PASSWORD, else it is the
source's password (asked for at most once).

Holds travel too (`dedupe.copy.copier`): a snapshot held in the source is held in the
destination with its reason, also one the destination already had; those are listed as held on
the destination (`held` in `--json`). A release never travels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial

from dedupe.cli import password
from dedupe.cli.context import Context, ProgressBar, Subparsers, human_bytes
from dedupe.cli.destination import open_destination, remembered
from dedupe.copy.copier import Copier, CopyResult, select, shares_blob_ids
from dedupe.errors import DamageError, DestinationFull
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import FILE
from dedupe.repo import journal
from dedupe.repo.repository import Repository
from dedupe.repo.treewalk import TREE, load_tree, traverse


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "copy",
        parents=[common],
        help="copy snapshots to another repository (all it lacks)",
        description="Copy backups to another repository: a rotating drive or the off-site copy. "
        "Only what the destination lacks is copied; held backups stay held there, with their "
        "reason. A destination too small for everything gets the oldest backups that fit, "
        "whole, and the command says how much more room the rest needs (exit 13). The "
        "destination's password comes from DEDUPE_TO_PASSWORD_FILE, DEDUPE_TO_PASSWORD_COMMAND "
        "or DEDUPE_TO_PASSWORD, else it is this repository's.",
        epilog="examples:\n  dedupe copy --to /media/backup-monday/repo\n"
        "  dedupe copy --to s3://practice-backups/offsite --to-s3-endpoint https://s3.example.net"
        "\n  dedupe copy --to /media/backup-monday/repo latest",
    )
    p.add_argument("snapshots", nargs="*", metavar="SNAP", help="snapshots to copy (default: all)")
    p.add_argument("--to", required=True, metavar="URL", help="the destination repository")
    p.add_argument(
        "--to-s3-endpoint",
        metavar="URL",
        help="S3 endpoint of the destination (default: --s3-endpoint / $DEDUPE_S3_ENDPOINT)",
    )
    p.set_defaults(handler=cmd_copy)


def cmd_copy(ctx: Context) -> int:
    source_secret = remembered(password.source())
    source = Repository.open(ctx.storage(), source_secret)
    ctx._repo = source  # so the CLI reports the source's skipped index files as usual
    dest = open_destination(ctx, source_secret)
    started = time.monotonic()
    try:
        with source.lock(exclusive=False), dest.lock(exclusive=False):
            candidates = select(source, dest, ctx.args.snapshots)
            present = set(dest.snapshot_names())
            todo = [s for s in candidates if s.id not in present]
            bar = ctx.progress_bar(None, "copy", note="measuring") if todo else None
            workers = max(2, min(8, os.cpu_count() or 2))
            copier = Copier(source, dest, workers=workers)
            if bar is not None:  # the total costs a walk over the trees: only for a bar
                copier.progress = _bar_progress(bar, copier, source, dest, todo)
            try:
                result = copier.run(candidates)
            finally:
                if bar is not None:
                    bar.close()
            # Both journals say what moved (copies and carried holds), even when a full
            # destination stopped the copy part-way.
            journal.record_copy(
                source,
                dest,
                candidates,
                result.copied + result.held,
                journal.command_line(sys.argv[1:]),
                journal.place(ctx.repo_url),
                journal.place(ctx.args.to),
            )
    finally:
        dest.storage.close()
    seconds = time.monotonic() - started
    for warning in result.warnings:
        ctx.warn(warning)
    if result.needed_bytes is not None and result.free_bytes is not None:
        ctx.info(
            f"this copy needed about {human_bytes(result.needed_bytes)}; the destination had "
            f"{human_bytes(result.free_bytes)} free"
        )
    if ctx.json:
        ctx.emit_json(
            {
                "copied": result.copied,
                "skipped": result.skipped,
                "held": result.held,
                "not_copied": result.not_copied,
                "short_bytes": result.short_bytes,
                "bytes_added": result.bytes_added,
                "bytes_read": result.bytes_read,
                "blobs_added": result.blobs_added,
                "mode": "same-ids" if result.same_ids else "rechunk",
                "seconds": round(seconds, 3),
            }
        )
        _refuse_if_full(ctx, result)
        return 0
    for snap_id in result.copied:
        ctx.done(f"copied snapshot {snap_id}")
    if result.held:
        ctx.done(_held_line(result.held, result.hold_reasons))
    how = "chunks copied as they are" if result.same_ids else "re-chunked for the destination"
    ctx.info(
        f"{len(result.copied)} snapshot(s) copied, {len(result.skipped)} already there; "
        f"read {human_bytes(result.bytes_read)}, added {human_bytes(result.bytes_added)} "
        f"({how}) in {seconds:.1f} s"
    )
    _refuse_if_full(ctx, result)
    return 0


def _bar_progress(
    bar: ProgressBar,
    copier: Copier,
    source: Repository,
    dest: Repository,
    todo: list[Snapshot],
) -> Callable[[int], None]:
    """Set the bar's totals (bytes and snapshots to copy) and return the copier's progress
    callback, which also counts the snapshots copied so far."""
    bar.total = _bytes_to_read(source, dest, todo)
    bar.note = f"0/{len(todo)} snapshots"
    bar.refresh()

    def progress(n: int) -> None:
        bar.note = f"{len(copier.result.copied)}/{len(todo)} snapshots"
        bar.update(n)

    return progress


def _bytes_to_read(source: Repository, dest: Repository, todo: list[Snapshot]) -> int | None:
    """The plaintext bytes the copy reads, or None when that is not known beforehand.

    With shared blob ids the copier reads each blob (tree or data) that the destination lacks,
    once: their sizes are in the source's index, and the trees walked here are the ones the
    copier walks next (from the tree cache). Re-chunking reads every file that an earlier copy
    does not pair up, which only the copy itself finds out: no total then (bytes, rate and
    snapshots only). A damaged tree leaves the total unknown; the copy reports the damage."""
    if not todo or not shares_blob_ids(source, dest):
        return None
    seen: set[bytes] = set()
    counted: set[bytes] = set()
    total = 0

    def first_visit(tree_id: bytes) -> bool:
        if tree_id in seen:
            return False
        seen.add(tree_id)
        return True

    try:
        walk = traverse(
            partial(load_tree, source),
            [s.tree for s in todo],
            first_visit=first_visit,
            entries=False,
        )
        for visit in walk:
            if visit.kind != TREE:
                continue
            blobs = [visit.tree_id]
            blobs += [b for node in visit.nodes if node.type == FILE for b in node.content]
            for blob_id in blobs:
                if blob_id not in counted and blob_id not in dest.index:
                    counted.add(blob_id)
                    total += source.locate(blob_id).raw_length
    except DamageError:
        return None
    return total


def _refuse_if_full(ctx: Context, result: CopyResult) -> None:
    """Exit 13 naming the destination when snapshots did not fit, after what fit was copied."""
    if not result.not_copied:
        return
    url = ctx.args.to
    short = human_bytes(result.short_bytes or 0)
    raise DestinationFull(
        f"the destination {url} is full: {len(result.copied)} snapshot(s) were copied (the "
        f"oldest first, whole snapshots only) and {len(result.not_copied)} did not fit; they "
        f"need about {short} more. Make room on it ('dedupe forget --repo {url} POLICY', then "
        f"'dedupe gc --repo {url}'), or use a larger drive; what was copied is complete and "
        "restores as it is."
    )


def _held_line(held: list[str], reasons: dict[str, str | None]) -> str:
    """`held on the destination: 1 snapshot (reason: fiscal year end 2026)`."""
    count = f"{len(held)} snapshot" + ("" if len(held) == 1 else "s")
    given = list(dict.fromkeys(r for r in (reasons.get(i) for i in held) if r is not None))
    if not given:
        because = ""
    elif len(given) == 1:
        because = f" (reason: {given[0]})"
    else:
        because = f" (reasons: {'; '.join(given)})"
    return f"held on the destination: {count}{because}"
