"""`dedupe journal [--since DATE] [--json]`: what was done to the repository, and why.

One block per journal entry (`dedupe.repo.journal`), oldest first, in words an office manager
reads: when, what (backups saved, removed with the rule that no longer kept them, space
recovered, held and released with the reason, copied, archived, password changed, a drive
retired), and who (user and host). `--json` prints the contract's array of
`{time, action, host, user, snapshots, reason}` (plus the details). Reading takes no lock and
changes nothing; a damaged or missing entry is named and the exit code is 14 (`dedupe check`
says more).
"""

from __future__ import annotations

import argparse
from typing import Any

from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.errors import DamageError
from dedupe.model.journal import Entry, SnapshotRef
from dedupe.repo import journal
from dedupe.repo.journal import describe_time

NO_RULE = "no rule keeps it"  # what forget journals for a snapshot no rule of the policy keeps
MAX_LISTED = 50  # snapshots listed under one entry; the rest are counted


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "journal",
        parents=[common],
        help="what was done to the repository and why (snapshots, removals, holds, copies)",
        description="Print the repository's retention journal: every snapshot, forget, gc, "
        "hold, release, copy, archive, key change and retirement, with its time, user, host, "
        "the backups concerned and the rule or reason. 'dedupe check' verifies that no entry "
        "was removed or replaced.",
    )
    p.add_argument(
        "--since", metavar="DATE", help="only entries from DATE on (2026-05-01 or 2026-05-01T18:00)"
    )
    p.set_defaults(handler=cmd_journal)


def cmd_journal(ctx: Context) -> int:
    since = journal.parse_since(ctx.args.since) if ctx.args.since else None
    repo = ctx.repo()
    found = journal.load(repo)
    problems = journal.chain_problems(found)
    entries = [e for _n, e in found.ordered() if since is None or e.time >= since]
    if ctx.json:
        ctx.emit_json(
            [_to_json(n, e) for n, e in found.ordered() if since is None or e.time >= since]
        )
    else:
        start = found.start()
        if start is None:
            ctx.out(
                "the journal is empty: it starts with the next snapshot, forget, gc, hold, "
                "release, copy or key change"
            )
        elif since is None:
            known = len(start.baseline or ())
            ctx.out(f"journal starts {describe_time(start.time)}; {known} backup(s) existed then")
        for entry in entries:
            for line in describe(entry):
                ctx.out(line)
    for text in problems:
        ctx.warn(text)
    if problems:
        raise DamageError(
            f"{len(problems)} problem(s) with the journal (an entry removed, replaced or "
            "damaged); run 'dedupe check'"
        )
    return 0


def _to_json(name: str, entry: Entry) -> dict[str, Any]:
    return {
        "time": entry.time.isoformat(),
        "action": entry.action,
        "host": entry.host,
        "user": entry.user,
        "snapshots": entry.snapshot_ids(),
        "reason": entry.reason,
        "command": entry.command,
        "freed_bytes": entry.freed_bytes,
        "direction": entry.direction,
        "details": dict(entry.details),
        "snapshot_details": [
            {
                "id": s.id,
                "time": s.time.isoformat(),
                "host": s.host,
                "paths": list(s.paths),
                "why": s.why,
                "held": s.held,
            }
            for s in entry.snapshots
        ],
        "id": name,
        "prev": list(entry.prev),
    }


def _backups(n: int) -> str:
    return f"{n} backup" + ("" if n == 1 else "s")


def _snapshot_lines(refs: tuple[SnapshotRef, ...], with_why: bool) -> list[str]:
    lines = []
    for ref in refs[:MAX_LISTED]:
        paths = " ".join(ref.paths)
        why = f"  ({ref.why})" if with_why and ref.why else ""
        if not with_why and ref.held:
            why = f"  (held{': ' + ref.why if ref.why else ''})"
        lines.append(f"    {ref.short_id()}  {describe_time(ref.time)}  {paths}{why}")
    if len(refs) > MAX_LISTED:
        lines.append(f"    ... and {len(refs) - MAX_LISTED} more ('dedupe journal --json')")
    return lines


def _one(ref: SnapshotRef) -> str:
    paths = f" ({' '.join(ref.paths)})" if ref.paths else ""
    return f"backup {ref.short_id()} of {describe_time(ref.time)}{paths}"


def _peer(entry: Entry) -> str:
    return str(entry.details.get("peer", "another repository"))


def describe(entry: Entry) -> list[str]:
    """The entry in words: a head line (when, what, by whom), then the backups concerned."""
    refs = entry.snapshots
    action = entry.action
    listed: list[str] = []
    if action == "snapshot":
        what = "saved " + (_one(refs[0]) if len(refs) == 1 else _backups(len(refs)))
        listed = _snapshot_lines(refs, False) if len(refs) != 1 else []
    elif action == "forget" and not refs:
        what = f"applied the retention {entry.reason or 'policy'}: nothing to remove"
    elif action == "forget":
        plain = all(r.why == NO_RULE for r in refs)
        which = "no rule keeps" if plain else "under the retention"
        what = f"removed {_backups(len(refs))} {which} ({entry.reason or 'policy'}):"
        listed = _snapshot_lines(refs, not plain)
    elif action == "gc":
        packs = entry.details.get("packs_deleted")
        what = f"gc recovered {human_bytes(entry.freed_bytes or 0)} of disk space" + (
            f" ({packs} pack(s) deleted)" if isinstance(packs, int) else ""
        )
        if refs:
            what += f"; the loss of {_backups(len(refs))} whose manifests had disappeared was "
            what += f"{entry.reason or 'accepted'}:"
            listed = _snapshot_lines(refs, False)
    elif action == "hold":
        reason = f": {entry.reason}" if entry.reason else " (no reason given)"
        what = f"held {_one(refs[0]) if refs else 'a backup'}{reason}"
    elif action == "release":
        what = f"released {_one(refs[0]) if refs else 'a backup'}; the policy applies again"
    elif action in ("copy", "archive") and entry.direction == "in":
        kind = "" if action == "copy" else " as an archive"
        reason = f", held: {entry.reason}" if entry.reason else ""
        what = f"received {_backups(len(refs))}{kind} from {_peer(entry)}{reason}:"
        listed = _snapshot_lines(refs, False)
    elif action == "copy":
        what = f"copied {_backups(len(refs))} to {_peer(entry)}:"
        listed = _snapshot_lines(refs, False)
    elif action == "archive":
        verified = entry.details.get("verified_blobs")
        proof = f"; verified by reading back {verified} pieces" if verified is not None else ""
        released = "; the holds here are released" if entry.details.get("released_here") else ""
        what = f"archived {_backups(len(refs))} to {_peer(entry)} ({entry.reason}){proof}{released}"
        listed = _snapshot_lines(refs, False)
    elif action == "key":
        what = entry.reason or "key changed"
    else:  # retire
        what = (
            f"retired {_peer(entry)} ({entry.reason}): its key files were destroyed, no "
            f"password opens it any more; {_backups(len(refs))} became unreadable"
        )
    head = f"{describe_time(entry.time)}  {what}  [{entry.user}@{entry.host}]"
    return [head, *listed]
