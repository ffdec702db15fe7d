"""gc: delete what no snapshot references and give the disk space back, safely on a full disk.

One step a module: survey (`dedupe.gc.survey`: list packs and index files, read the headers of
packs no index names; the grace period), mark (`dedupe.gc.mark`: every blob the snapshots reach,
trees included), plan (`dedupe.gc.plan`, pure), then execute (`dedupe.gc.execute`) in an order
that a SIGKILL at any instant cannot turn into a lost chunk; its docstring states that order.
Every index entry is a row of numpy columns (`dedupe.repo.entrytable`), never a Python object, so
memory stays near 60 bytes a chunk.

Concurrency: `run_gc` must be called with the repository's exclusive lock held (`run` takes it).
`snapshot` takes a shared lock, so a snapshot and gc never overlap: a snapshot that started
first makes gc fail with exit 11, and one started during gc fails the same way. A lock can be
misjudged (stale by mistake), so there is a time margin too (`survey.GRACE_SECONDS`).

Lying listings: gc believes what it cannot see is garbage. So before deleting anything it
compares the snapshots it sees with the census (`dedupe.repo.census`): none while packs exist,
or a sharp drop from the recorded count, stops gc unless the user accepts exactly that.

Every gc that finishes (not a dry run) appends a `gc` entry to the retention journal
(`dedupe.repo.journal`) with the bytes it freed, still under its lock.
"""

from __future__ import annotations

import time
from dataclasses import replace

from dedupe.errors import OutOfSpace
from dedupe.gc.execute import execute
from dedupe.gc.mark import TableMarks, mark_snapshots
from dedupe.gc.plan import GcPlan, make_plan
from dedupe.gc.result import GcResult, Progress, no_progress
from dedupe.gc.survey import Survey, survey_repository
from dedupe.model.journal import SnapshotRef
from dedupe.repo import census, journal, manifests
from dedupe.repo.repository import Repository

__all__ = ["GcResult", "Progress", "run", "run_gc"]


def run(
    repo: Repository,
    max_unused: float = 0.10,
    dry_run: bool = False,
    progress: Progress | None = None,
    *,
    allow_empty: bool = False,
    accept_snapshot_count: int | None = None,
    command: str = "dedupe gc",
) -> GcResult:
    """`run_gc` under the exclusive lock (a dry run takes none: it changes nothing).
    `command` is what the journal entry records as the command line."""
    if dry_run:
        return run_gc(repo, max_unused, dry_run, progress, allow_empty, accept_snapshot_count)
    with repo.lock(exclusive=True, frees_space=True) as lock:
        result = run_gc(
            repo, max_unused, dry_run, progress, allow_empty, accept_snapshot_count, lock.name
        )
        accepted = None
        if allow_empty:
            accepted = "accepted as lost with gc --allow-empty"
        elif accept_snapshot_count is not None:
            accepted = f"accepted as lost with gc --accept-snapshot-count {accept_snapshot_count}"
        _journal(repo, result, command, accepted)
        return result


def _lost(repo: Repository, why: str) -> tuple[SnapshotRef, ...]:
    """The snapshots the journal says exist whose manifests are gone, as `why` accepted them."""
    present = set(repo.snapshot_names())
    expected = journal.replay(journal.load(repo).ordered()).present
    return tuple(
        replace(ref, why=why)
        for sid, (ref, _entry) in sorted(expected.items())
        if sid not in present
    )


def _journal(repo: Repository, result: GcResult, command: str, accepted: str | None) -> None:
    """The journal entry of a finished gc (after it: gc removes only what nothing uses, so
    an interrupted gc has nothing the journal must already say). When the user accepted a
    drop in the snapshot count (`--allow-empty`, `--accept-snapshot-count`), the entry names the
    snapshots whose manifests had disappeared: the journal then records that their loss was
    accepted, and by whom, instead of `check` reporting them as deleted by hand forever."""
    lost = _lost(repo, accepted) if accepted is not None else ()
    entry = journal.new_entry(
        "gc",
        command,
        snapshots=lost,
        reason=accepted if lost else None,
        freed_bytes=result.freed_bytes,
        details={
            "packs_deleted": result.packs_deleted,
            "packs_rewritten": result.packs_rewritten,
            "stored_bytes_after": result.stored_bytes_after,
        },
    )
    try:
        journal.append(repo, entry)
    except OutOfSpace:
        pass  # a disk still too full for a few hundred bytes: gc removed only what no snapshot
        # uses, so a missing gc entry hides no backup; failing the gc that made room would
        # only stop the office from making more


def run_gc(
    repo: Repository,
    max_unused: float = 0.10,
    dry_run: bool = False,
    progress: Progress | None = None,
    allow_empty: bool = False,
    accept_snapshot_count: int | None = None,
    lock_name: str | None = None,
) -> GcResult:
    """Collect garbage. The caller holds the exclusive lock (except for a dry run), named
    `lock_name` when known (its mtime is the storage's "now" for the grace period).

    Refuses (`census.SnapshotCountRefused`, a dry run too) when it sees no snapshot while packs
    exist, or far fewer than the census recorded, unless `allow_empty` or
    `accept_snapshot_count` (exactly the count seen) says so: a listing that lies must not make
    gc delete the backups it failed to see. A run that finishes records the count it saw."""
    report = progress or no_progress
    try:
        # A dry run holds no lock to read the storage's time from; it deletes nothing, so this
        # machine's clock is good enough for its report.
        survey = survey_repository(repo, lock_name, time.time() if dry_run else None)
        snaps = manifests.load_all(repo)
        remembered = census.remembered_count(repo, len(snaps), allow_empty, accept_snapshot_count)
        census.check_count(
            len(snaps), remembered, survey.pack_bytes, allow_empty, accept_snapshot_count
        )
        marks = TableMarks(survey.table)
        missing = mark_snapshots(repo, marks, report, snaps)
        plan = make_plan(marks.entries(), survey.packs(), max_unused, missing)
        marks.release()
        if dry_run:
            return _dry_result(survey, plan)
        return execute(repo, survey, plan, report, len(snaps))
    finally:
        repo.forget_index()  # the next reader loads the index as gc left it


def _dry_result(survey: Survey, plan: GcPlan) -> GcResult:
    sizes = survey.table.pack_sizes()
    freed = (
        sum(t.size for t in survey.temporary)
        + int(sizes[plan.orphans].sum() + sizes[plan.delete].sum())
        + sum(max(0, r.size - r.write_bytes) for r in plan.repack)
    )
    return GcResult(
        dry_run=True,
        stored_bytes_before=survey.stored_bytes,
        stored_bytes_after=survey.stored_bytes - freed,
        freed_bytes=freed,
        # A repacked pack is deleted once its live blobs are rewritten: the real run counts it.
        packs_deleted=len(plan.orphans) + len(plan.delete) + len(plan.repack),
        packs_rewritten=len(plan.repack),
        unused_bytes=plan.unused_kept_bytes,
        live_blobs=plan.live_blobs,
        missing_blobs=plan.missing,
        temporary_files_deleted=len(survey.temporary),
        packs_kept_young=len(plan.young),
        damaged_packs=[p.hex() for p in survey.unreadable],
    )
