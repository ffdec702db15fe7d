"""gc: delete what no snapshot references and give the disk space back, safely on a full disk.

Survey (list packs and index files, read the headers of packs no index names), mark (every blob
the snapshots reach, trees included), plan (`dedupe.gc.plan`, pure), then execute in an order
that a SIGKILL at any instant cannot turn into a lost chunk. Every index entry is a row of numpy
columns (`dedupe.gc.indexfiles`), never a Python object, so memory stays near 60 bytes a chunk.

1. Temporary leftovers, packs no index names and no snapshot needs, and index files already
   superseded are deleted first: no index names them, so nothing can reach them.
2. Whole-garbage packs: new index files naming every kept pack (and every pack still to be
   repacked) are written, each of at most `gcindex.MAX_FILE_ENTRIES` entries, the last one
   superseding every old index file; then the old index files are deleted, then the garbage
   packs, which nothing names any more. On a disk too full for that index write, the zero-byte
   marker `gc-pending` is written first and the garbage packs are deleted before the index:
   while the marker exists, `Repository.load_index` drops entries of absent packs, so a later
   snapshot can never dedupe against a deleted chunk (borg#9748). The marker goes once the new
   index is durable.
3. Repacks, in batches that fit the free space: the kept copies are verified and copied sealed
   as they are (a blob's ciphertext does not depend on its pack) into new packs, which are made
   durable; then index files naming them and everything else the files naming the old packs
   name, the last superseding those files; then those files; then the old packs. Each batch
   frees its space before the next one needs it; when the next repack cannot fit, gc stops
   there and reports what is left (what was possible was freed).

Only the last file of a replacement supersedes anything, so until it is durable the replaced
files are current and name everything the new ones name. At every instant the current index
(the files no other file supersedes) names only packs that exist, or the marker is present; and
every live chunk is in a pack the current index names.

Concurrency: `run_gc` must be called with the repository's exclusive lock held (`run` takes it).
`snapshot` takes a shared lock, so a snapshot and gc never overlap: a snapshot that started
first makes gc fail with exit 11, and one started during gc fails the same way. A lock can be
misjudged (stale by mistake), so there is a time margin too: packs no index names and temporary
files younger than GRACE_SECONDS, by the storage's clock (the mtime of gc's own lock), are kept.

Lying listings: gc believes what it cannot see is garbage. So before deleting anything it
compares the snapshots it sees with the census (`dedupe.repo.census`): none while packs exist,
or a sharp drop from the recorded count, stops gc unless the user accepts exactly that.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dedupe.crypto.seal import content_hash
from dedupe.errors import (
    DamageError,
    DedupeError,
    ObjectNotFound,
    OutOfSpace,
    StorageError,
)
from dedupe.gc.indexfiles import EntryTable, IndexFiles, read_index
from dedupe.gc.mark import mark_reachable
from dedupe.gc.plan import GcPlan, Repack, index_bytes, make_plan, with_young
from dedupe.model.snapshot import Snapshot
from dedupe.repo import census, manifests, reserve
from dedupe.repo.index import ChunkIndex, PackColumns
from dedupe.repo.pack import PackBuilder
from dedupe.repo.repository import GC_PENDING, Repository, pack_id_from_name, pack_name
from dedupe.storage.base import Leftover

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): phases "mark" (trees), "delete" (packs), "repack" (bytes)."""

# Free space gc leaves untouched while repacking, beyond the next index files.
SPACE_MARGIN = 1 << 20
# Below the estimated index size plus this, gc frees space before it writes the index.
INDEX_SLACK = 64 << 10
# Temporary files outside data/, index/ and snapshots/ may belong to a lock being taken right
# now (locks are written without holding a lock); only old ones there are leftovers.
TEMP_GRACE_SECONDS = 3600.0
# Packs no index names and temporaries in data/, index/, snapshots/ younger than this (by the
# storage's clock) are kept: a backup whose lock gc misjudged may still be writing them, and its
# index and manifest come last (kopia's minimum content age is the same 24 hours).
GRACE_SECONDS = 24 * 3600.0
_GC_FOLDERS = ("data", "index", "snapshots")


@dataclass
class GcResult:
    """What gc did (or, with dry_run, would do). `freed_bytes` is stored bytes given back."""

    dry_run: bool
    stored_bytes_before: int
    stored_bytes_after: int
    freed_bytes: int
    packs_deleted: int = 0
    packs_rewritten: int = 0
    packs_written: int = 0
    bytes_written: int = 0
    unused_bytes: int = 0
    packs_left_for_space: int = 0
    live_blobs: int = 0
    missing_blobs: int = 0
    index_files_deleted: int = 0
    temporary_files_deleted: int = 0
    packs_kept_young: int = 0
    """Packs no index names, written within GRACE_SECONDS: kept whole (maybe a backup's)."""
    damaged_packs: list[str] = field(default_factory=list)


@dataclass
class Survey:
    """The repository's packs and index files as listed at the start of gc."""

    table: EntryTable
    """Every entry of every present pack: named by a current index file, or from its header."""
    files: dict[str, list[int]]
    """Current index file -> the (present) packs it names, by number."""
    superseded: list[str]
    absent_indexed: int
    unreadable: list[bytes]
    stored_bytes: int
    temporary: list[Leftover]
    pack_bytes: int = 0
    pack_mtimes: dict[bytes, float | None] = field(default_factory=dict)
    """Each pack's mtime by the storage's clock (None: unknown)."""
    clock: float | None = None
    """The storage's "now" at the survey (see `survey_repository`); None where unknown."""


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


def run(
    repo: Repository,
    max_unused: float = 0.10,
    dry_run: bool = False,
    progress: Progress | None = None,
    *,
    allow_empty: bool = False,
    accept_snapshot_count: int | None = None,
) -> GcResult:
    """`run_gc` under the exclusive lock (a dry run takes none: it changes nothing)."""
    if dry_run:
        return run_gc(repo, max_unused, dry_run, progress, allow_empty, accept_snapshot_count)
    with repo.lock(exclusive=True, frees_space=True) as lock:
        return run_gc(
            repo, max_unused, dry_run, progress, allow_empty, accept_snapshot_count, lock.name
        )


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
    report = progress or _no_progress
    try:
        # A dry run holds no lock to read the storage's time from; it deletes nothing, so this
        # machine's clock is good enough for its report.
        survey = survey_repository(repo, lock_name, time.time() if dry_run else None)
        snaps = manifests.load_all(repo)
        remembered = census.remembered_count(repo, len(snaps), allow_empty, accept_snapshot_count)
        census.check_count(
            len(snaps), remembered, survey.pack_bytes, allow_empty, accept_snapshot_count
        )
        missing = mark(repo, survey, report, snaps)
        plan = make_plan(
            survey.table.entries(),
            with_young(survey.table.packs(), survey.pack_mtimes, survey.clock, GRACE_SECONDS),
            max_unused,
            missing,
        )
        survey.table.release_marks()
        if dry_run:
            return _dry_result(survey, plan)
        return _Executor(repo, survey, plan, report, len(snaps)).run()
    finally:
        repo._index = None  # the next reader loads the index as gc left it


# --- survey and mark ---------------------------------------------------------------------------


def survey_repository(
    repo: Repository, lock_name: str | None = None, now: float | None = None
) -> Survey:
    """List packs and index files; read headers of packs no current index file names. The
    storage's time is `now` if given, else the mtime of the lock `lock_name`, else of the newest
    lock (the caller holds one), else of the newest object: all no later than the real time."""
    storage = repo.storage
    pack_sizes: dict[bytes, int] = {}
    pack_mtimes: dict[bytes, float | None] = {}
    stored = 0
    newest_lock = newest = None
    for info in storage.list(""):
        if info.name.startswith("locks/"):
            newest_lock = _later(newest_lock, info.mtime)
            continue
        newest = _later(newest, info.mtime)
        if info.name == reserve.RESERVE_NAME:
            continue
        stored += info.size
        pack_id = pack_id_from_name(info.name)
        if pack_id is not None:
            pack_sizes[pack_id] = info.size
            pack_mtimes[pack_id] = info.mtime
    clock = now or _own_lock_time(storage, lock_name) or newest_lock or newest
    try:
        found = read_index(repo, pack_sizes)
    except DamageError as exc:
        raise DamageError(
            f"an index file is damaged ({exc}); gc deleted nothing. Run 'dedupe repair index' "
            "to rebuild the index from the packs, then run gc again"
        ) from None
    except StorageError as exc:
        if isinstance(exc, ObjectNotFound):
            raise
        raise type(exc)(
            f"gc could not read the index ({exc}); it deleted nothing. If the disk or the "
            "connection is failing, fix that first; if an index file is unreadable, run "
            "'dedupe repair index' to rebuild the index from the packs"
        ) from None
    temporary = _temporary_files(storage, clock)
    stored += sum(t.size for t in temporary)
    return Survey(
        table=found.table,
        files=found.files,
        superseded=found.superseded,
        absent_indexed=found.absent,
        unreadable=found.unreadable,
        stored_bytes=stored,
        temporary=temporary,
        pack_bytes=sum(pack_sizes.values()),
        pack_mtimes=pack_mtimes,
        clock=clock,
    )


def _later(a: float | None, b: float | None) -> float | None:
    return b if a is None or (b is not None and b > a) else a


def _own_lock_time(storage: object, lock_name: str | None) -> float | None:
    if lock_name is None:
        return None
    try:
        return storage.stat(lock_name).mtime  # type: ignore[attr-defined]
    except DedupeError:
        return None


def _no_recovery() -> ChunkIndex:
    raise AssertionError("gc's entry table is never damaged: it is no cache")


def mark(
    repo: Repository, survey: Survey, report: Progress, snaps: list[Snapshot] | None = None
) -> int:
    """Mark every blob the snapshots (by default: all) reach in the table; returns how many
    reached ids are in no pack. A damaged manifest or tree aborts gc (DamageError): without a
    complete mark nothing may be deleted."""
    table = survey.table
    if snaps is None:
        snaps = manifests.load_all(repo)
    # Trees are read through the table: trees in adopted packs must be readable too.
    repo._index = ChunkIndex(table, _no_recovery)
    count = [0]

    def on_tree(_tree_id: bytes) -> None:
        count[0] += 1
        report("mark", count[0], 0)

    mark_reachable(repo, [s.tree for s in snaps], table, on_tree)
    repo._index = None
    return table.finish_mark()


def _temporary_files(storage: object, clock: float | None = None) -> list[Leftover]:
    """Leftover temporary files gc may delete, from backends that can leave them behind.

    In the folders dedupe's writers use (data/, index/, snapshots/) only those older than
    GRACE_SECONDS: gc holds the exclusive lock, but a writer whose lock it misjudged may be in
    the middle of a put. Elsewhere (locks/, keys/) those older than TEMP_GRACE_SECONDS, since a
    process may be taking a lock right now (without holding one).

    A backend measures a leftover's age with this machine's clock; where the storage's `clock`
    (see `Survey.clock`) is behind it, ages count that much less: never older than by either.
    """
    lister = getattr(storage, "list_leftovers", None)
    if lister is None:
        return []
    behind = 0.0 if clock is None else max(0.0, time.time() - clock)
    found = []
    for leftover in lister():
        top = leftover.name.split("/")[0]
        limit = GRACE_SECONDS if top in _GC_FOLDERS else TEMP_GRACE_SECONDS
        if leftover.age - behind > limit:
            found.append(leftover)
    return found


def _dry_result(survey: Survey, plan: GcPlan) -> GcResult:
    sizes = survey.table.packs().sizes
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


# --- execution ---------------------------------------------------------------------------------


class _Executor:
    """Carries out a plan in the crash-safe order described in the module docstring."""

    def __init__(
        self, repo: Repository, survey: Survey, plan: GcPlan, report: Progress, snapshots: int
    ) -> None:
        self.repo = repo
        self.snapshots = snapshots
        self.storage = repo.storage
        self.survey = survey
        self.plan = plan
        self.report = report
        # The current index files and what they name; the replacements gc writes.
        self.index = IndexFiles(repo, survey.table, plan, survey.files)
        self.result = GcResult(
            dry_run=False,
            stored_bytes_before=survey.stored_bytes,
            stored_bytes_after=survey.stored_bytes,
            freed_bytes=0,
            live_blobs=plan.live_blobs,
            missing_blobs=plan.missing,
            packs_kept_young=len(plan.young),
            damaged_packs=[p.hex() for p in survey.unreadable],
        )
        self.rng = random.Random()

    def run(self) -> GcResult:
        self._delete_temporary()
        # Nothing names these: deleting them needs no index change and frees space first.
        self._delete_packs(self.plan.orphans)
        self._delete_index_files(self.survey.superseded)
        marker = self.storage.exists(GC_PENDING)
        if len(self.plan.delete) or len(self.plan.adopted) or self.survey.absent_indexed or marker:
            self._drop_garbage(marker)
        left = self._repack_all()
        try:
            # The count this run judged plausible is the one the next gc compares against.
            census.record_snapshot_count(self.repo, self.snapshots)
        except OutOfSpace:
            pass  # the disk is still full: the old record stays, the next gc tries again
        reserve.ensure(self.storage)
        r = self.result
        r.index_files_deleted += self.index.deleted
        r.packs_left_for_space = len(left)
        r.unused_bytes = self.plan.unused_kept_bytes + sum(
            int(self.plan.unused[x.pack]) for x in left
        )
        r.stored_bytes_after = stored_bytes(self.storage)
        r.freed_bytes = max(0, r.stored_bytes_before - r.stored_bytes_after)
        return r

    # --- step 1 and 2 ---------------------------------------------------------------------

    def _delete_temporary(self) -> None:
        for leftover in self.survey.temporary:
            try:
                self.storage.delete_leftover(leftover)  # type: ignore[attr-defined]
                self.result.temporary_files_deleted += 1
            except DedupeError:
                pass

    def _drop_garbage(self, marker: bool) -> None:
        staying = [*self.plan.keep.tolist(), *(r.pack for r in self.plan.repack)]
        needed = index_bytes(len(staying), int(self.plan.named_count[staying].sum()))
        free = self.storage.free_space()
        full_disk = free is not None and free < needed + INDEX_SLACK
        garbage = len(self.plan.delete) > 0
        if not (full_disk and garbage):
            try:
                # The new index no longer names the garbage packs and its last file supersedes
                # every old index file; only once it is durable (and the old files are gone)
                # are the packs deleted, when nothing names them any more.
                self._commit_all(staying)
                self._delete_packs(self.plan.delete)
                if marker:
                    self.storage.delete(GC_PENDING)
                return
            except OutOfSpace:
                if not garbage:
                    raise
        # No room for the index write: free space first. The marker is durable before the
        # first delete, so after a crash from here on readers ignore index entries of packs
        # that are gone; it is removed only once an index naming no deleted pack is durable.
        if not marker:
            self.storage.put(GC_PENDING, b"")
        self._delete_packs(self.plan.delete)
        self._commit_all(staying)
        self.storage.delete(GC_PENDING)

    def _commit_all(self, staying: list[int]) -> None:
        """Replace every current index file by files naming the packs that stay. Packs to be
        repacked come last, in the order they are repacked: each repack batch then rewrites
        only the few files that name its packs."""
        self.index.commit(staying, list(self.index.files))

    def _delete_index_files(self, names: list[str]) -> None:
        for name in names:
            try:
                self.storage.delete(f"index/{name}")
                self.result.index_files_deleted += 1
            except ObjectNotFound:
                pass

    def _delete_packs(self, packs: np.ndarray | list[int]) -> None:
        total = len(packs)
        for i, pack in enumerate(packs):
            try:
                self.storage.delete(pack_name(self.index.pack_id(int(pack))))
                self.result.packs_deleted += 1
            except ObjectNotFound:
                pass
            self.report("delete", i + 1, total)

    # --- step 3 -----------------------------------------------------------------------------

    def _repack_all(self) -> list[Repack]:
        """Repack in batches that fit the free space; return the repacks left for lack of it."""
        pending = list(self.plan.repack)
        progress = [0, sum(r.live_bytes for r in pending)]
        while pending:
            batch = self._next_batch(pending)
            if not batch:
                return pending
            done, stop = self._repack_batch(batch, progress)
            pending = pending[len(batch) :]
            if stop:
                done_packs = {r.pack for r in done}
                return [r for r in batch if r.pack not in done_packs] + pending
            # A repack not done without a full disk met damage: it is reported, not retried.
        return []

    def _next_batch(self, pending: list[Repack]) -> list[Repack]:
        free = self.storage.free_space()
        if free is None:
            return list(pending)
        batch: list[Repack] = []
        files: set[str] = set()
        used = new_entries = 0
        for r in pending:
            # The batch writes its packs, then files replacing those that name its packs.
            grown = files.union(self.index.naming([r.pack]))
            packs, entries = self.index.entries_of(grown)
            index = index_bytes(packs + 2 * (len(batch) + 1), entries + new_entries + r.kept_blobs)
            if used + r.write_bytes + index > free - SPACE_MARGIN:
                break  # keep the order: most freed per byte written first
            batch.append(r)
            files = grown
            used += r.write_bytes
            new_entries += r.kept_blobs
        return batch

    def _repack_batch(self, batch: list[Repack], progress: list[int]) -> tuple[list[Repack], bool]:
        """Copy, commit, delete. (repacks done, stop because the disk is full)."""
        builders = [PackBuilder(), PackBuilder()]
        # Per builder: how many blobs of each repack (by position in the batch) it holds.
        holds: list[dict[int, int]] = [{}, {}]
        # Per repack whose blobs were all verified: how many are not yet in a durable pack.
        waiting: dict[int, int] = {}
        # Two packs are filled at random (as the writer does, so pack contents do not mirror
        # file order), unless the batch fills less than one pack: then one, not two half packs.
        slots = 2 if sum(r.write_bytes for r in batch) > self.repo.settings.pack_size else 1
        new_packs: list[int] = []
        stop = False

        def put(slot: int) -> None:
            new_packs.append(self._put_pack(builders[slot]))
            for position, count in holds[slot].items():
                waiting[position] -= count
            builders[slot], holds[slot] = PackBuilder(), {}

        try:
            for position, r in enumerate(batch):
                items = self._verified_blobs(r)
                if items is None:
                    continue
                waiting[position] = len(items)
                self.rng.shuffle(items)
                for blob_id, sealed, raw_length in items:
                    slot = self.rng.randrange(slots)
                    builders[slot].add(blob_id, sealed, raw_length)
                    holds[slot][position] = holds[slot].get(position, 0) + 1
                    if len(builders[slot]) >= self.repo.settings.pack_size:
                        put(slot)
                progress[0] += r.live_bytes
                self.report("repack", progress[0], progress[1])
            for slot in range(2):
                if len(builders[slot]):
                    put(slot)
        except OutOfSpace:
            stop = True  # the free-space estimate was wrong; commit what is durable
        done = [batch[p] for p, count in waiting.items() if count == 0]
        if not new_packs:
            return [], stop
        try:
            self.index.replace([r.pack for r in done], new_packs)
        except OutOfSpace:
            # The old packs stay named by the old files: drop the new copies again, unless a
            # file that could not be deleted names them.
            for pack in new_packs:
                if not self.index.naming([pack]):
                    self._delete_quietly(pack_name(self.index.pack_id(pack)))
            return [], True
        self._delete_packs([r.pack for r in done])
        self.result.packs_rewritten += len(done)
        return done, stop

    def _verified_blobs(self, r: Repack) -> list[tuple[bytes, bytes, int]] | None:
        """(id, sealed bytes, raw length) of the kept blobs, each verified; None (and noted) on
        damage, so a damaged copy is never spread into a new pack while its pack is deleted."""
        try:
            data = self.storage.get(pack_name(r.pack_id))
            if content_hash(data) != r.pack_id:
                raise DamageError("pack contents do not match its name")
            table = self.survey.table
            rows = table.pack_rows(r.pack, self.plan.kept)
            ids = table.ids[rows].tobytes()
            items = []
            for i, (offset, length, raw_length) in enumerate(table.fields[rows].tolist()):
                blob_id = ids[32 * i : 32 * i + 32]
                sealed = data[offset : offset + length]
                self.repo.blobs.decode(sealed, blob_id, raw_length)
                items.append((blob_id, sealed, raw_length))
            return items
        except (DamageError, ObjectNotFound):
            self.result.damaged_packs.append(r.pack_id.hex())
            return None

    def _put_pack(self, builder: PackBuilder) -> int:
        entries = builder.entries
        ids = b"".join([e.blob_id for e in entries])
        # No tuple per entry: a pack of tiny blobs holds hundreds of thousands of them.
        flat = (value for e in entries for value in (e.offset, e.length, e.raw_length))
        fields = np.fromiter(flat, dtype="<u4", count=3 * len(entries))
        pack_id, data = builder.finish(self.repo.sealer)
        self.storage.put(pack_name(pack_id), data)
        self.result.packs_written += 1
        self.result.bytes_written += len(data)
        return self.index.add_new_pack(PackColumns(pack_id, ids, fields.reshape(-1, 3)))

    def _delete_quietly(self, name: str) -> None:
        try:
            self.storage.delete(name)
        except DedupeError:
            pass


def stored_bytes(storage: object) -> int:
    """Bytes of every repository object (locks and the space reserve excluded), plus leftover
    temporary files gc would delete."""
    total = 0
    for info in storage.list(""):  # type: ignore[attr-defined]
        if not (info.name.startswith("locks/") or info.name == reserve.RESERVE_NAME):
            total += info.size
    return total + sum(t.size for t in _temporary_files(storage))
