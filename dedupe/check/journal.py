"""check's look at the retention journal: its chain, and what it says against what is there.

Errors (exit 14):
- an entry that a later one names is missing (removed), or an entry is damaged or replaced
  (its bytes no longer hash to its name, or its seal does not open);
- a snapshot the journal says exists (saved, copied in, or there when the journal started, and
  never forgotten) has no manifest: it was deleted by hand, or lost;
- a snapshot `forget` removed has a manifest again: an older copy was put back (or that
  forget was interrupted before it deleted it);
- a snapshot the journal says is held has neither a hold record nor a held manifest: the hold
  was removed without `release` (a record beside an unheld manifest, or a held manifest without
  its record, is reported by the hold check; the snapshot is still held then).
Notes (no exit code): where the journal starts, and snapshots it does not know (saved before
it started, or copied in by a dedupe that did not journal the copy).

The journal is listed before the manifests (`dedupe.check.checker`): a snapshot writes its
manifest before its entry, so an entry check sees always has its manifest listed.
"""

from __future__ import annotations

from collections.abc import Callable

from dedupe.model.journal import Entry, SnapshotRef
from dedupe.model.snapshot import HoldRecord, Snapshot
from dedupe.repo import journal as journal_mod
from dedupe.repo.journal import Journal, describe_time

Say = Callable[[str], None]


def _label(ref: SnapshotRef) -> str:
    paths = f", {' '.join(ref.paths)}" if ref.paths else ""
    return f"snapshot {ref.short_id()} of {describe_time(ref.time)}{paths}"


def _by(entry: Entry) -> str:
    return f"{describe_time(entry.time)} by {entry.user} on {entry.host}"


def check_journal(
    journal: Journal,
    snaps: list[Snapshot],
    manifest_names: list[str],
    records: dict[str, HoldRecord | None],
    error: Say,
    note: Say,
) -> None:
    """Report the journal's chain problems and its disagreements with the manifests and hold
    records (see the module docstring)."""
    start = journal.start()
    if start is None and not journal.damaged:
        note(
            "the repository has no journal yet: it starts with the next snapshot, forget, gc, "
            "hold, release, copy or key change"
        )
        return
    if start is not None:
        known = len(start.baseline or ())
        note(
            f"journal starts at {describe_time(start.time)} ({len(journal.entries)} entries; "
            f"{known} snapshot(s) existed then)"
        )
    for text in journal_mod.chain_problems(journal):
        error(text)
    expected = journal_mod.replay(journal.ordered())
    present = set(manifest_names)
    by_id = {s.id: s for s in snaps}
    missing = [sid for sid in expected.present if sid not in present]
    if missing:
        note(
            f"if the {len(missing)} missing snapshot(s) were removed on purpose, "
            f"'dedupe gc --accept-snapshot-count {len(present)}' records in the journal that "
            "their loss was accepted"
        )
    for sid, (ref, entry) in sorted(expected.present.items()):
        if sid in present:
            continue
        held = " It was held" + (f" ({ref.why})" if ref.why else "") + "."
        error(
            f"{_label(ref)} is missing: the journal records it ({entry.action}, "
            f"{_by(entry)}) and no 'dedupe forget' removed it, so its manifest was deleted "
            f"without dedupe or lost.{held if sid in expected.held else ''}"
        )
    for sid, (ref, entry) in sorted(expected.removed.items()):
        if sid in present:
            error(
                f"{_label(ref)} was removed by 'dedupe forget' ({_by(entry)}), but its manifest "
                "is there again: an older copy was put back (or that forget was interrupted; "
                "running it again removes it)"
            )
    for sid, (ref, entry) in sorted(expected.held.items()):
        snap = by_id.get(sid)
        if sid in records or snap is None or snap.held:
            continue  # still held (a held manifest without its record is the hold check's)
        reason = f" ({ref.why})" if ref.why else ""
        error(
            f"the hold on {_label(ref)}{reason}, made {_by(entry)}, is gone: its hold record "
            "was deleted and its manifest is not held, without 'dedupe release'"
        )
    unknown = [s for s in snaps if s.id not in expected.present and s.id not in expected.removed]
    if unknown:
        shown = ", ".join(s.short_id() for s in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        note(
            f"{len(unknown)} snapshot(s) are not in the journal ({shown}): copied in by a "
            "dedupe that did not journal copies, or saved while the journal could not be "
            "written"
        )
