"""gc: delete what no snapshot references and give the disk space back, safely on a full disk.

Survey (list packs and index files, read the headers of packs no index names), mark (every blob
the snapshots reach, trees included), plan (`dedupe.gcplan`, pure), then execute in an order
that a SIGKILL at any instant cannot turn into a lost chunk:

1. Temporary leftovers, packs no index names and no snapshot needs, and index files already
   superseded are deleted first: no index names them, so nothing can reach them.
2. Whole-garbage packs: a new index file naming every kept pack (and every pack still to be
   repacked) and superseding every old index file is written, the old index files are deleted,
   then the garbage packs, which nothing names any more. On a disk too full for that index
   write, the zero-byte marker `gc-pending` is written first and the garbage packs are deleted
   before the index: while the marker exists, `Repository.load_index` drops entries of absent
   packs, so a later snapshot can never dedupe against a deleted chunk (borg#9748). The marker
   goes once the new index is durable.
3. Repacks, in batches that fit the free space: the kept copies are verified and copied sealed
   as they are (a blob's ciphertext does not depend on its pack) into new packs, which are made
   durable; then an index file naming them and superseding the previous one; then the old index
   file; then the old packs. Each batch frees its space before the next one needs it; when the
   next repack cannot fit, gc stops there and reports what is left (what was possible was freed).

At every instant the current index (the files no other file supersedes) names only packs that
exist, or the marker is present; and every live chunk is in a pack the current index names.

Concurrency: `run_gc` must be called with the repository's exclusive lock held (`run` takes it).
`snapshot` takes a shared lock, so a snapshot and gc never overlap: a snapshot that started
first makes gc fail with exit 11, and one started during gc fails the same way. This is the
simple choice (restic's) over time margins or two-phase deletion: gc is short next to a night.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from dedupe import snapshots
from dedupe.crypto.seal import content_hash
from dedupe.errors import DamageError, DedupeError, ObjectNotFound, OutOfSpace, StorageError
from dedupe.gcplan import GcPlan, PackInfo, Repack, index_bytes, make_plan
from dedupe.reachable import referenced_blobs
from dedupe.repo import reserve
from dedupe.repo.index import ChunkIndex, IndexFile, decode_index
from dedupe.repo.pack import BlobEntry, PackBuilder, decode_header, header_span
from dedupe.repo.repository import GC_PENDING, Repository, pack_id_from_name, pack_name
from dedupe.storage.base import Leftover

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): phases "mark" (trees), "delete" (packs), "repack" (bytes)."""

# Free space gc leaves untouched while repacking, beyond the next index file.
SPACE_MARGIN = 1 << 20
# Below the estimated index size plus this, gc frees space before it writes the index.
INDEX_SLACK = 64 << 10
# Temporary files outside data/, index/ and snapshots/ may belong to a lock being taken right
# now (locks are written without holding a lock); only old ones there are leftovers.
TEMP_GRACE_SECONDS = 3600.0
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
    damaged_packs: list[str] = field(default_factory=list)


@dataclass
class Survey:
    """The repository's packs and index files as listed at the start of gc."""

    packs: list[PackInfo]
    pack_sizes: dict[bytes, int]
    index_names: list[str]
    superseded: list[str]
    absent_indexed: int
    unreadable: list[bytes]
    stored_bytes: int
    temporary: list[Leftover]


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


def run(
    repo: Repository,
    max_unused: float = 0.10,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> GcResult:
    """`run_gc` under the exclusive lock (a dry run takes none: it changes nothing)."""
    if dry_run:
        return run_gc(repo, max_unused, dry_run, progress)
    with repo.lock(exclusive=True, frees_space=True):
        return run_gc(repo, max_unused, dry_run, progress)


def run_gc(
    repo: Repository,
    max_unused: float = 0.10,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> GcResult:
    """Collect garbage. The caller holds the exclusive lock (except for a dry run)."""
    report = progress or _no_progress
    survey = survey_repository(repo)
    try:
        live = mark(repo, survey, report)
        plan = make_plan(survey.packs, live, max_unused)
        if dry_run:
            return _dry_result(survey, plan)
        return _Executor(repo, survey, plan, report).run()
    finally:
        repo._index = None  # the next reader loads the index as gc left it


# --- survey and mark ---------------------------------------------------------------------------


def survey_repository(repo: Repository) -> Survey:
    """List packs and index files; read headers of packs no current index file names."""
    storage = repo.storage
    pack_sizes: dict[bytes, int] = {}
    stored = 0
    for info in storage.list(""):
        if info.name.startswith("locks/") or info.name == reserve.RESERVE_NAME:
            continue
        stored += info.size
        pack_id = pack_id_from_name(info.name)
        if pack_id is not None:
            pack_sizes[pack_id] = info.size
    files: dict[str, IndexFile] = {}
    for info in storage.list("index/"):
        name = info.name.split("/")[-1]
        try:
            files[name] = decode_index(storage.get(info.name), repo.sealer, name)
        except ObjectNotFound:
            continue
    superseded_names = {s for f in files.values() for s in f.supersedes}
    indexed: dict[bytes, dict[bytes, BlobEntry]] = {}
    absent = set()
    for name, index_file in files.items():
        if name in superseded_names:
            continue
        for pack_id, entries in index_file.packs:
            if pack_id not in pack_sizes:
                absent.add(pack_id)
                continue
            table = indexed.setdefault(pack_id, {})
            for e in entries:
                table.setdefault(e.blob_id, e)
    packs = [
        PackInfo(pid, pack_sizes[pid], tuple(table.values()), True)
        for pid, table in indexed.items()
    ]
    unreadable = []
    for pack_id, size in pack_sizes.items():
        if pack_id in indexed:
            continue
        try:
            entries = read_pack_header(repo, pack_id, size)
        except (DamageError, StorageError):
            unreadable.append(pack_id)  # left alone: it is not ours to judge without a header
            continue
        packs.append(PackInfo(pack_id, size, tuple(entries), False))
    temporary = _temporary_files(storage)
    stored += sum(t.size for t in temporary)
    return Survey(
        packs=packs,
        pack_sizes=pack_sizes,
        index_names=sorted(files),
        superseded=sorted(n for n in files if n in superseded_names),
        absent_indexed=len(absent),
        unreadable=unreadable,
        stored_bytes=stored,
        temporary=temporary,
    )


def read_pack_header(repo: Repository, pack_id: bytes, size: int) -> list[BlobEntry]:
    """The entries of a pack's own header (for packs no index names)."""
    name = pack_name(pack_id)
    offset, length = header_span(size, repo.storage.get(name, size - 4, 4))
    return decode_header(repo.storage.get(name, offset, length), repo.sealer, size)


def mark(repo: Repository, survey: Survey, report: Progress) -> set[bytes]:
    """Every blob a snapshot reaches. A damaged manifest or tree aborts gc (DamageError):
    without a complete mark nothing may be deleted."""
    index = ChunkIndex()
    for pack in sorted(survey.packs, key=lambda p: not p.indexed):
        index.add_pack(pack.pack_id, pack.entries)
    repo._index = index  # trees in adopted packs must be readable too
    snaps = snapshots.load_all(repo)
    count = [0]

    def on_tree(_tree_id: bytes) -> None:
        count[0] += 1
        report("mark", count[0], 0)

    trees, data = referenced_blobs(repo, snaps, on_tree)
    return trees | data


def _temporary_files(storage: object) -> list[Leftover]:
    """Leftover temporary files gc may delete, from backends that can leave them behind.

    In the folders only dedupe's own writers use, every temporary is a leftover (gc holds the
    exclusive lock); elsewhere (locks/, keys/) only old ones, since a process may be taking a
    lock right now.
    """
    lister = getattr(storage, "list_leftovers", None)
    if lister is None:
        return []
    found = []
    for leftover in lister():
        top = leftover.name.split("/")[0]
        if top in _GC_FOLDERS or leftover.age > TEMP_GRACE_SECONDS:
            found.append(leftover)
    return found


def _dry_result(survey: Survey, plan: GcPlan) -> GcResult:
    freed = (
        sum(t.size for t in survey.temporary)
        + sum(p.size for p in (*plan.orphans, *plan.delete))
        + sum(max(0, r.pack.size - r.write_bytes) for r in plan.repack)
    )
    return GcResult(
        dry_run=True,
        stored_bytes_before=survey.stored_bytes,
        stored_bytes_after=survey.stored_bytes - freed,
        freed_bytes=freed,
        packs_deleted=len(plan.orphans) + len(plan.delete),
        packs_rewritten=len(plan.repack),
        unused_bytes=plan.unused_kept_bytes,
        live_blobs=plan.live_blobs,
        missing_blobs=len(plan.missing),
        temporary_files_deleted=len(survey.temporary),
        damaged_packs=[p.hex() for p in survey.unreadable],
    )


# --- execution ---------------------------------------------------------------------------------


class _Executor:
    """Carries out a plan in the crash-safe order described in the module docstring."""

    def __init__(self, repo: Repository, survey: Survey, plan: GcPlan, report: Progress) -> None:
        self.repo = repo
        self.storage = repo.storage
        self.survey = survey
        self.plan = plan
        self.report = report
        # What the next index file names: every pack that stays, with all its entries.
        self.current: dict[bytes, tuple[BlobEntry, ...]] = {
            p.pack_id: p.entries for p in (*plan.keep, *(r.pack for r in plan.repack))
        }
        self.index_names = [n for n in survey.index_names if n not in survey.superseded]
        self.result = GcResult(
            dry_run=False,
            stored_bytes_before=survey.stored_bytes,
            stored_bytes_after=survey.stored_bytes,
            freed_bytes=0,
            live_blobs=plan.live_blobs,
            missing_blobs=len(plan.missing),
            damaged_packs=[p.hex() for p in survey.unreadable],
        )
        self.rng = random.Random()

    def run(self) -> GcResult:
        self._delete_temporary()
        # Nothing names these: deleting them needs no index change and frees space first.
        self._delete_packs(self.plan.orphans)
        self._delete_index_files(self.survey.superseded)
        marker = self.storage.exists(GC_PENDING)
        if self.plan.delete or self.plan.adopted or self.survey.absent_indexed or marker:
            self._drop_garbage(marker)
        left = self._repack_all()
        reserve.ensure(self.storage)
        r = self.result
        r.packs_left_for_space = len(left)
        r.unused_bytes = self.plan.unused_kept_bytes + sum(
            self.plan.unused_bytes.get(x.pack.pack_id, 0) for x in left
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
        needed = index_bytes(len(self.current), sum(len(e) for e in self.current.values()))
        free = self.storage.free_space()
        full_disk = free is not None and free < needed + INDEX_SLACK
        if not (full_disk and self.plan.delete):
            try:
                # The new index no longer names the garbage packs and supersedes every old
                # index file; only once it is durable (and the old files are gone) are the
                # packs deleted, when nothing names them any more.
                self._commit_index()
                self._delete_packs(self.plan.delete)
                if marker:
                    self.storage.delete(GC_PENDING)
                return
            except OutOfSpace:
                if not self.plan.delete:
                    raise
        # No room for the index write: free space first. The marker is durable before the
        # first delete, so after a crash from here on readers ignore index entries of packs
        # that are gone; it is removed only once an index naming no deleted pack is durable.
        if not marker:
            self.storage.put(GC_PENDING, b"")
        self._delete_packs(self.plan.delete)
        self._commit_index()
        self.storage.delete(GC_PENDING)

    def _commit_index(self) -> None:
        """Write an index naming `self.current` that supersedes every index file, then delete
        those files. Every pack it names exists and stays until a later commit drops it."""
        packs = sorted(self.current.items())
        name, _size = self.repo.write_index([(pid, list(e)) for pid, e in packs], self.index_names)
        old, self.index_names = self.index_names, [name]
        self._delete_index_files(old)

    def _delete_index_files(self, names: list[str]) -> None:
        for name in names:
            try:
                self.storage.delete(f"index/{name}")
                self.result.index_files_deleted += 1
            except ObjectNotFound:
                pass

    def _delete_packs(self, packs: tuple[PackInfo, ...] | list[PackInfo]) -> None:
        for i, pack in enumerate(packs):
            try:
                self.storage.delete(pack_name(pack.pack_id))
                self.result.packs_deleted += 1
            except ObjectNotFound:
                pass
            self.report("delete", i + 1, len(packs))

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
                done_ids = {r.pack.pack_id for r in done}
                return [r for r in batch if r.pack.pack_id not in done_ids] + pending
            # A repack not done without a full disk met damage: it is reported, not retried.
        return []

    def _next_batch(self, pending: list[Repack]) -> list[Repack]:
        free = self.storage.free_space()
        if free is None:
            return list(pending)
        blobs = sum(len(e) for e in self.current.values())
        budget = free - SPACE_MARGIN - index_bytes(len(self.current) + len(pending), blobs)
        batch: list[Repack] = []
        used = 0
        for r in pending:
            if used + r.write_bytes > budget:
                break  # keep the order: most freed per byte written first
            batch.append(r)
            used += r.write_bytes
        return batch

    def _repack_batch(self, batch: list[Repack], progress: list[int]) -> tuple[list[Repack], bool]:
        """Copy, commit, delete. (repacks done, stop because the disk is full)."""
        builders = [PackBuilder(), PackBuilder()]
        # Two packs are filled at random (as the writer does, so pack contents do not mirror
        # file order), unless the batch fills less than one pack: then one, not two half packs.
        slots = 2 if sum(r.write_bytes for r in batch) > self.repo.settings.pack_size else 1
        relocated: set[bytes] = set()
        new_packs: list[bytes] = []
        stop = False
        try:
            for r in batch:
                items = self._verified_blobs(r)
                if items is None:
                    continue
                self.rng.shuffle(items)
                for entry, sealed in items:
                    slot = self.rng.randrange(slots)
                    builders[slot].add(entry.blob_id, sealed, entry.raw_length)
                    if len(builders[slot]) >= self.repo.settings.pack_size:
                        new_packs.append(self._put_pack(builders[slot], relocated))
                        builders[slot] = PackBuilder()
                progress[0] += r.live_bytes
                self.report("repack", progress[0], progress[1])
            for builder in builders:
                if len(builder):
                    new_packs.append(self._put_pack(builder, relocated))
        except OutOfSpace:
            stop = True  # the free-space estimate was wrong; commit what is durable
        done = [r for r in batch if r.keep and all(e.blob_id in relocated for e in r.keep)]
        if not new_packs:
            return [], stop
        for r in done:
            del self.current[r.pack.pack_id]
        try:
            self._commit_index()
        except OutOfSpace:
            # The old packs stay named by the old index: drop the unnamed copies again.
            for r in done:
                self.current[r.pack.pack_id] = r.pack.entries
            for pack_id in new_packs:
                self.current.pop(pack_id, None)
                self._delete_quietly(pack_name(pack_id))
            return [], True
        self._delete_packs([r.pack for r in done])
        self.result.packs_rewritten += len(done)
        return done, stop

    def _verified_blobs(self, r: Repack) -> list[tuple[BlobEntry, bytes]] | None:
        """The sealed bytes of the kept blobs, each verified; None (and noted) on damage, so a
        damaged copy is never spread into a new pack while its pack is deleted."""
        pack_id = r.pack.pack_id
        try:
            data = self.storage.get(pack_name(pack_id))
            if content_hash(data) != pack_id:
                raise DamageError("pack contents do not match its name")
            items = []
            for e in r.keep:
                sealed = data[e.offset : e.offset + e.length]
                self.repo.blobs.decode(sealed, e.blob_id, e.raw_length)
                items.append((e, sealed))
            return items
        except (DamageError, ObjectNotFound):
            self.result.damaged_packs.append(pack_id.hex())
            return None

    def _put_pack(self, builder: PackBuilder, relocated: set[bytes]) -> bytes:
        entries = tuple(builder.entries)
        pack_id, data = builder.finish(self.repo.sealer)
        self.storage.put(pack_name(pack_id), data)
        self.current[pack_id] = entries
        relocated.update(e.blob_id for e in entries)
        self.result.packs_written += 1
        self.result.bytes_written += len(data)
        return pack_id

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
