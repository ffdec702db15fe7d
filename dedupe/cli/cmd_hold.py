"""`dedupe hold SNAP [--reason TEXT]` and `dedupe release SNAP`: archive a snapshot for good.

A held snapshot is kept by every policy and by `--max-backups`. The hold is a field of the
snapshot's manifest, rewritten (atomically: the storage's put replaces whole objects) under the
exclusive lock, the same lock `forget` holds from reading the snapshots to deleting the last one.
So a hold either lands before forget reads the snapshots, and is honoured, or after forget is done;
it can never be lost between forget's verdict and its deletion.

Each hold also writes a sealed hold record (`holds/<snapshot id>`, `dedupe.repo.manifests.hold`),
so a
deleted or replaced manifest cannot end a hold unseen; `release` removes it. The write orders
that keep an interruption safe are explained at `manifests.hold` and `manifests.release`.

Both are journalled (`dedupe.repo.journal`): a hold after it is made, a release before it is
undone, so an interruption never leaves a journal that says "released" of a hold that is gone
unrecorded (check reports a hold the journal records whose record was removed).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from dedupe.cli.context import Context, Subparsers
from dedupe.errors import UsageError
from dedupe.model.snapshot import Snapshot
from dedupe.repo import journal, manifests
from dedupe.retention import local_time

MAX_REASON_LENGTH = 500


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "hold",
        parents=[common],
        help="keep a snapshot whatever the retention policy says",
        description="Mark a snapshot as held: forget and --max-backups never remove it until "
        "'dedupe release'. Holding a held snapshot again with --reason replaces its reason.",
    )
    p.add_argument("snapshot", metavar="SNAP")
    p.add_argument("--reason", metavar="TEXT", help="why it is held, e.g. 'legal hold 2026-17'")
    p.set_defaults(handler=cmd_hold)

    p = sub.add_parser(
        "release",
        parents=[common],
        help="end the hold on a snapshot",
        description="End the hold on a snapshot; the retention policy applies to it again.",
    )
    p.add_argument("snapshot", metavar="SNAP")
    p.set_defaults(handler=cmd_release)


def _clean_reason(text: str | None) -> str | None:
    """The reason as stored: trimmed, None when empty, on one line and of sane length."""
    if text is None or not text.strip():
        return None
    reason = " ".join(text.split())  # the table and reasons are one line per snapshot
    if len(reason) > MAX_REASON_LENGTH:
        raise UsageError(f"--reason is too long ({len(reason)} > {MAX_REASON_LENGTH} characters)")
    return reason


def cmd_hold(ctx: Context) -> int:
    return _set_hold(ctx, held=True, reason=_clean_reason(ctx.args.reason))


def cmd_release(ctx: Context) -> int:
    return _set_hold(ctx, held=False, reason=None)


def _set_hold(ctx: Context, held: bool, reason: str | None) -> int:
    repo = ctx.repo()
    with repo.lock(exclusive=True):
        # Resolved under the lock: a forget that ran just before must not be raced.
        snap = manifests.resolve(repo, ctx.args.snapshot)
        if held and reason is None and snap.held:
            reason = snap.hold_reason  # holding again without --reason keeps the reason
        command = journal.command_line(sys.argv[1:])
        if held:
            updated = manifests.hold(repo, snap, reason, datetime.now(UTC))
            entry = journal.new_entry(
                "hold", command, snapshots=(journal.ref(updated, reason),), reason=reason
            )
            journal.append(repo, entry)
        else:
            if not snap.held and manifests.has_hold_record(repo, snap.id):
                snap = snap.with_hold(True, None)  # held by its record: report the release
            if snap.held:
                entry = journal.new_entry(
                    "release", command, snapshots=(journal.ref(snap, snap.hold_reason),)
                )
                journal.append(repo, entry)
            updated = manifests.release(repo, snap)
    _report(ctx, snap, updated)
    return 0


def _report(ctx: Context, before: Snapshot, after: Snapshot) -> None:
    if ctx.json:
        ctx.emit_json({"id": after.id, "held": after.held, "hold_reason": after.hold_reason})
        return
    when = local_time(after.time, None).strftime("%Y-%m-%d %H:%M")
    if after.held:
        because = f" ({after.hold_reason})" if after.hold_reason else ""
        verb = "is now held" if not before.held else "is held"
        ctx.out(f"snapshot {after.short_id()} of {when} {verb}{because}")
    elif before.held:
        ctx.out(f"snapshot {after.short_id()} of {when} is released; the policy applies again")
    else:
        ctx.out(f"snapshot {after.short_id()} of {when} was not held; nothing changed")
