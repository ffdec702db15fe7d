"""`dedupe forget POLICY`: remove the snapshots a retention policy does not keep.

The decisions come from the pure `dedupe.retention.apply_policy`; this module only loads the
snapshots, shows the verdicts and deletes manifests. A real run holds the exclusive lock from
loading to the last deletion, so the verdicts are made on exactly the snapshots that exist while
it deletes: a concurrent `hold` (which also takes the exclusive lock) either happens before the
snapshots are loaded, and is honoured, or waits until forget is done. A dry run takes no lock and
writes nothing. Only manifests are deleted; the data comes back with `gc` (`--gc`).

A snapshot with a hold record (`dedupe.repo.manifests`) is held even if its manifest says otherwise
(deleted hold, or an older copy put back): forget keeps it, says why, and exits 14 so that the
office looks at `dedupe check`. After deleting, forget records how many snapshots remain
(`dedupe.repo.census`), which gc compares against before it deletes data.

Every real run is journalled (`dedupe.repo.journal`) before the first deletion: each snapshot it
removes, with its time and why no rule kept it, and the policy. A removal is thus never done
without its record (if the entry cannot be written, nothing is removed); a crash after the entry
leaves snapshots the journal calls removed, which the same forget removes when run again. The
one exception is a disk too full for the entry even after spending the reserve: then the entry
follows the deletions (which make the room), since forget must work on a full disk.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from collections.abc import Iterable
from typing import Any

from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.cli.policy_args import add_policy_arguments, policy_from_args
from dedupe.errors import DamageError, DedupeError, ObjectNotFound, OutOfSpace, UsageError
from dedupe.gc import collect
from dedupe.model.journal import Entry as JournalEntry
from dedupe.model.journal import SnapshotRef
from dedupe.repo import journal, manifests, reserve
from dedupe.repo.census import record_after_forget
from dedupe.repo.repository import Repository
from dedupe.retention import (
    Decision,
    Policy,
    apply_policy,
    decisions_to_json,
    local_time,
    snapshot_info,
)


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "forget",
        parents=[common],
        help="remove snapshots that a retention policy does not keep",
        description="Remove the snapshots that no rule of the policy keeps (held snapshots are "
        "always kept). Only snapshot manifests are removed; 'dedupe gc' (or --gc) returns the "
        "disk space.",
    )
    p.add_argument(
        "--dry-run", "-n", action="store_true", help="show what would be removed; change nothing"
    )
    p.add_argument("--gc", action="store_true", help="run gc after forgetting")
    add_policy_arguments(p)
    p.set_defaults(handler=cmd_forget)


def cmd_forget(ctx: Context) -> int:
    args = ctx.args
    # The policy is checked before the repository is even opened: a refused policy must never
    # get as far as deleting anything, and a usage error should not cost a password prompt.
    policy = policy_from_args(args)
    if not policy.has_keep_rule():
        raise UsageError(
            "the policy has no keep rule, so forget would remove every snapshot that is not "
            "held; nothing was removed. Give at least one --keep-* option (or a --policy file "
            "with one), e.g. --keep-last 10"
        )
    repo = ctx.repo()
    damaged: list[str] = []
    if args.dry_run:
        decisions = _decide(repo, policy, damaged)
        removed: list[Decision] = []
    else:
        with repo.lock(exclusive=True, frees_space=True):
            decisions = _decide(repo, policy, damaged)
            listed = len(repo.snapshot_names())
            entry = _journal_entry(policy, decisions)
            journalled = _journal_first(repo, entry)
            removed = _delete_removed(repo, decisions)
            if not journalled:
                _journal_after(repo, entry)
            # Under the lock, after the deletions and before any gc: gc compares the count
            # with the snapshots it finds, and refuses when they dropped unexplained. The
            # census's forget variant records max(listed, recorded) - removed, so a listing
            # that showed too few snapshots cannot lower the count gc is checked against.
            record_after_forget(repo, listed, len(removed))
    gc_result: dict[str, Any] | None = None
    gc_error: DedupeError | None = None
    if not ctx.json:
        _print_table(ctx, policy, decisions, args.dry_run)
    if args.gc and args.dry_run:
        ctx.info("gc skipped: this was a dry run, so nothing was forgotten")
    elif args.gc:
        # gc takes its own exclusive lock: ours was released above, so it does not block itself.
        try:
            gc_result = run_gc(ctx)
        except DedupeError as exc:
            gc_error = exc
        if gc_result is not None and gc_result.get("damaged_packs"):
            gc_error = DamageError(
                f"gc: {len(gc_result['damaged_packs'])} pack(s) could not be read or verified "
                "and were left alone; run 'dedupe check --read-data'"
            )
    if ctx.json:
        result: dict[str, Any] = decisions_to_json(decisions) | {"dry_run": bool(args.dry_run)}
        if gc_result is not None:
            result["gc"] = gc_result
        ctx.emit_json(result)
    elif gc_result is not None and "freed_bytes" in gc_result:
        ctx.out(f"gc: freed {human_bytes(gc_result['freed_bytes'])}")
    for text in damaged:
        ctx.warn(text)
    if gc_error is not None:
        raise gc_error
    if damaged:
        raise DamageError(
            f"{len(damaged)} problem(s) with snapshot manifests or hold records; those "
            f"snapshots were left alone and {len(removed)} other snapshot(s) were removed. "
            "Run 'dedupe check'"
        )
    return 0


def _decide(repo: Repository, policy: Policy, damaged: list[str]) -> list[Decision]:
    """The policy's verdict on every readable snapshot (damaged manifests go to `damaged`).

    Leaving an unreadable manifest out can only make the policy keep more, never less: every
    rule counts buckets that have a snapshot and max-backups counts what is kept, so one snapshot
    fewer never turns another's keep into a remove. The damaged manifest itself is not touched.
    A snapshot named by a hold record is judged as held, whatever its manifest says; a record
    that disagrees with its manifest is reported in `damaged`.
    """
    records = manifests.load_hold_records(repo, damaged)
    infos = []
    for snap in manifests.load_all(repo, damaged):
        guarded = manifests.held_by_record(snap, records)
        if guarded is not snap:
            damaged.append(
                f"snapshot {snap.short_id()} has a hold record but its manifest says it is not "
                "held (its manifest was replaced by an older copy, or a hold was interrupted); "
                "it is kept as held"
            )
        infos.append(snapshot_info(guarded))
    return apply_policy(infos, policy, None)


def _removes(decision: Decision) -> bool:
    return not decision.keep and not decision.snapshot.held  # held: never removed


def _journal_entry(policy: Policy, decisions: list[Decision]) -> JournalEntry:
    """The journal entry of this forget: each snapshot it removes, and why."""
    refs = tuple(
        SnapshotRef(
            id=d.snapshot.id,
            time=d.snapshot.time,
            host=d.snapshot.host,
            paths=tuple(d.snapshot.paths),
            why="; ".join(d.texts) or "no rule keeps it",
        )
        for d in decisions
        if _removes(d)
    )
    kept = sum(1 for d in decisions if not _removes(d))
    return journal.new_entry(
        "forget",
        journal.command_line(sys.argv[1:]),
        snapshots=refs,
        reason=f"policy {policy.describe()}",
        details={"kept": kept},
    )


def _journal_first(repo: Repository, entry: JournalEntry) -> bool:
    """Journal before deleting; True when done. On a full disk the reserve is spent for it
    (forget frees space, as its lock may); if even that is not enough, False: the manifests are
    deleted first and the entry written after (`_journal_after`), because a full disk must
    never stop the one command that makes room (kopia#4419)."""
    try:
        journal.append(repo, entry)
        return True
    except OutOfSpace:
        if not reserve.release(repo.storage):
            return False
    try:
        journal.append(repo, entry)
        return True
    except OutOfSpace:
        return False


def _journal_after(repo: Repository, entry: JournalEntry) -> None:
    try:
        journal.append(repo, entry)
    except OutOfSpace as exc:
        raise OutOfSpace(
            f"the snapshots were removed, but the disk is so full that the journal entry "
            f"recording it could not be written ({exc}); run 'dedupe gc' to make room"
        ) from None


def _delete_removed(repo: Repository, decisions: Iterable[Decision]) -> list[Decision]:
    """Delete the manifest of every snapshot the policy removes; each deletion is atomic.

    An interruption leaves some of them deleted and the rest intact, which is what a rerun of
    the same policy would decide anyway (a dry run and a real run agree).
    """
    removed = []
    for decision in decisions:
        if not _removes(decision):
            continue
        try:
            repo.delete_manifest(decision.snapshot.id)
        except ObjectNotFound:
            pass  # already gone (removed by hand): the outcome is the same
        removed.append(decision)
    return removed


def _print_table(ctx: Context, policy: Policy, decisions: list[Decision], dry_run: bool) -> None:
    """One block per (host, paths) group, newest first, with the reasons of each verdict."""
    ctx.out(f"policy: {policy.describe()}")
    for (host, paths), group in itertools.groupby(decisions, key=lambda d: d.snapshot.group_key):
        rows = list(group)
        kept = sum(1 for d in rows if d.keep)
        ctx.out("")
        ctx.out(
            f"host {host}, paths {' '.join(paths)}: keep {kept}, remove {len(rows) - kept} "
            f"of {len(rows)}"
        )
        ctx.out(f"  {'ID':<8}  {'TIME':<20}  {'ACTION':<6}  REASONS")
        for d in rows:
            local = local_time(d.snapshot.time, None)
            ctx.out(
                f"  {d.snapshot.id[:8]:<8}  {local.strftime('%a %Y-%m-%d %H:%M'):<20}  "
                f"{'keep' if d.keep else 'remove':<6}  {', '.join(d.texts)}".rstrip()
            )
    kept = sum(1 for d in decisions if d.keep)
    removed = len(decisions) - kept
    ctx.out("")
    if dry_run:
        ctx.out(f"dry run: would keep {kept}, remove {removed} snapshot(s); nothing was changed")
    else:
        ctx.out(f"kept {kept}, removed {removed} snapshot(s)")
        if removed:
            ctx.out("run 'dedupe gc' to recover the disk space they used")


def run_gc(ctx: Context) -> dict[str, Any]:
    """Run gc (`dedupe.gc.collect.run`) and return the contract's gc JSON object. gc takes its
    own exclusive lock: forget's is released by then."""
    command = journal.command_line(sys.argv[1:])
    return dataclasses.asdict(collect.run(ctx.repo(), command=command))
