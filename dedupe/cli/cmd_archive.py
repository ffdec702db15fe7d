"""`dedupe archive SNAP... --to URL --reason TEXT [--release-here]`: keep snapshots elsewhere,
for longer, and be able to show it.

Steps, in this order:
1. copy the snapshots to the destination (`dedupe.copy.copier`, as `dedupe copy` does; ones it
   already has are not copied again);
2. read every blob of those snapshots back from the destination, with its index loaded afresh
   (`dedupe.check.readback`): a copy counts only once it is proven readable;
3. hold them on the destination with the reason (a hold record each, as `dedupe hold`);
4. journal it on both sides (`dedupe.repo.journal`): "archive" received on the destination,
   "archive" sent in this repository, with the blobs verified;
5. with `--release-here`, release the local holds (each journalled first, as `dedupe release`),
   so the local policy may remove them later.
If the read-back fails, the command exits 14 naming what could not be read; nothing is held
on the destination for the archive and nothing is released here (a copy that did happen is
journalled as a copy on both sides, so both journals still match their manifests).

Locks: a shared lock here while copying (snapshots may go on), the exclusive lock on the
destination (no forget or gc there can race the copy and the hold), and the exclusive lock here
for the release. The destination's password: DEDUPE_TO_PASSWORD_FILE, _COMMAND or
DEDUPE_TO_PASSWORD, else this repository's.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

from dedupe.check.readback import ReadBack, read_back
from dedupe.cli import password
from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.cli.destination import open_destination, remembered
from dedupe.copy.copier import Copier, CopyResult, select
from dedupe.errors import DamageError, UsageError
from dedupe.model.snapshot import Snapshot
from dedupe.repo import journal, manifests
from dedupe.repo.repository import Repository

MAX_REASON_LENGTH = 500


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "archive",
        parents=[common],
        help="copy snapshots to another repository, hold them there, verify, and journal it",
        description="Archive snapshots: copy them to the repository at --to, read every piece "
        "of them back from there, hold them there with --reason, and record it in the journals "
        "of both repositories. With --release-here the local holds end afterwards, so the "
        "local retention policy may remove them. If the read-back fails, nothing is released.",
    )
    p.add_argument("snapshots", nargs="+", metavar="SNAP", help="the snapshots to archive")
    p.add_argument("--to", required=True, metavar="URL", help="the archive repository")
    p.add_argument(
        "--reason", required=True, metavar="TEXT", help="why, e.g. 'fiscal year 2026, keep 10y'"
    )
    p.add_argument(
        "--release-here",
        action="store_true",
        help="after a verified archive, release the snapshots' holds in this repository",
    )
    p.add_argument(
        "--to-s3-endpoint",
        metavar="URL",
        help="S3 endpoint of the destination (default: --s3-endpoint / $DEDUPE_S3_ENDPOINT)",
    )
    p.set_defaults(handler=cmd_archive)


def _reason(text: str) -> str:
    reason = " ".join(text.split())
    if not reason:
        raise UsageError("--reason is empty: say why these snapshots are archived")
    if len(reason) > MAX_REASON_LENGTH:
        raise UsageError(f"--reason is too long ({len(reason)} > {MAX_REASON_LENGTH} characters)")
    return reason


def cmd_archive(ctx: Context) -> int:
    reason = _reason(ctx.args.reason)
    source_secret = remembered(password.source())
    source = Repository.open(ctx.storage(), source_secret)
    ctx._repo = source  # the CLI reports the source's skipped index files as usual
    dest = open_destination(ctx, source_secret, "archive destination")
    command = journal.command_line(sys.argv[1:])
    here, there = journal.place(ctx.repo_url), journal.place(ctx.args.to)
    try:
        with source.lock(exclusive=False), dest.lock(exclusive=True):
            snaps = select(source, dest, ctx.args.snapshots)
            workers = max(2, min(8, os.cpu_count() or 2))
            result = Copier(source, dest, workers=workers).run(snaps)
            proof = read_back(dest, [s.id for s in snaps])
            if not proof.ok:
                # What the copy did is still journalled on both sides.
                moved = result.copied + result.held
                journal.record_copy(source, dest, snaps, moved, command, here, there)
                raise DamageError(_failed(there, proof))
            for snap in snaps:
                manifests.hold(dest, manifests.load(dest, snap.id), reason, datetime.now(UTC))
            details: dict[str, str | int | bool] = {
                "verified_blobs": proof.blobs,
                "verified_bytes": proof.bytes,
                "released_here": bool(ctx.args.release_here),
            }
            refs = tuple(journal.ref(manifests.load(dest, s.id), reason, True) for s in snaps)
            journal.append(
                dest,
                journal.new_entry(
                    "archive",
                    command,
                    snapshots=refs,
                    reason=reason,
                    direction="in",
                    details=details | {"peer": here},
                ),
            )
            journal.append(
                source,
                journal.new_entry(
                    "archive",
                    command,
                    snapshots=tuple(journal.ref(s, reason) for s in snaps),
                    reason=reason,
                    direction="out",
                    details=details | {"peer": there},
                ),
            )
    finally:
        dest.storage.close()
    released = _release_here(source, snaps, command) if ctx.args.release_here else []
    _report(ctx, snaps, result, proof, released, there, reason)
    return 0


def _failed(there: str, proof: ReadBack) -> str:
    named = "\n".join(f"  {text}" for text in proof.problems)
    return (
        f"the archive copy at {there} could not be read back: {proof.damaged_blobs} piece(s) "
        f"are missing or damaged, so the snapshots were not held there for the archive and "
        f"nothing was released here. Run 'dedupe check --read-data' on {there}, fix or "
        f"replace it, then archive again.\n{named}"
    )


def _release_here(source: Repository, snaps: list[Snapshot], command: str) -> list[Snapshot]:
    """Release the local holds of `snaps` (each journalled before it is undone)."""
    released = []
    with source.lock(exclusive=True):
        for snap in snaps:
            try:
                current = manifests.load(source, snap.id)
            except UsageError:
                continue  # removed meanwhile: nothing left to release
            if not current.held and manifests.has_hold_record(source, snap.id):
                current = current.with_hold(True, None)
            if not current.held:
                continue
            entry = journal.new_entry(
                "release", command, snapshots=(journal.ref(current, current.hold_reason),)
            )
            journal.append(source, entry)
            manifests.release(source, current)
            released.append(current)
    return released


def _report(
    ctx: Context,
    snaps: list[Snapshot],
    result: CopyResult,
    proof: ReadBack,
    released: list[Snapshot],
    there: str,
    reason: str,
) -> None:
    for warning in result.warnings:
        ctx.warn(warning)
    if ctx.json:
        ctx.emit_json(
            {
                "archived": [s.id for s in snaps],
                "copied": result.copied,
                "already_there": result.skipped,
                "verified_blobs": proof.blobs,
                "verified_bytes": proof.bytes,
                "released_here": [s.id for s in released],
                "to": there,
                "reason": reason,
            }
        )
        return
    for snap in snaps:
        ctx.out(f"archived snapshot {snap.short_id()} of {snap.time:%Y-%m-%d %H:%M} to {there}")
    ctx.out(
        f"held there: {len(snaps)} snapshot(s) (reason: {reason}); verified by reading back "
        f"{proof.blobs} pieces ({human_bytes(proof.bytes)} of file data)"
    )
    if released:
        ctx.out(f"released here: {len(released)} snapshot(s); the local policy may now remove them")
    ctx.out("recorded in the journals of both repositories ('dedupe journal')")
