"""gc's execution: carry out a plan in an order that a SIGKILL at any instant cannot turn into a
lost chunk.

1. Temporary leftovers, packs no index names and no snapshot needs, and index files already
   superseded are deleted first: no index names them, so nothing can reach them.
2. Whole-garbage packs: new index files naming every kept pack (and every pack still to be
   repacked) are written, each of at most `indexfiles.MAX_FILE_ENTRIES` entries, the last one
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
files are current and name everything the new ones name (`dedupe.gc.indexfiles`). At every
instant the current index (the files no other file supersedes) names only packs that exist, or
the marker is present; and every live chunk is in a pack the current index names.

The caller holds the repository's exclusive lock (`dedupe.gc.collect.run` takes it).
"""

from __future__ import annotations

import random
from contextlib import closing

import numpy as np

from dedupe.crypto.seal import content_hash
from dedupe.errors import DamageError, DedupeError, ObjectNotFound, OutOfSpace
from dedupe.gc.indexfiles import IndexFiles
from dedupe.gc.plan import GcPlan, Repack, index_bytes
from dedupe.gc.result import GcResult, Progress
from dedupe.gc.survey import Survey, stored_bytes
from dedupe.repo import census, reserve
from dedupe.repo.indexfile import PackColumns
from dedupe.repo.pack import PackBuilder
from dedupe.repo.readahead import THREADS, in_order
from dedupe.repo.repository import GC_PENDING, Repository, pack_name

# Free space gc leaves untouched while repacking, beyond the next index files.
SPACE_MARGIN = 1 << 20
# Below the estimated index size plus this, gc frees space before it writes the index.
INDEX_SLACK = 64 << 10
# Packs read and verified by threads (dedupe.repo.readahead) while the batch copies earlier ones:
# at most this many beyond the one being copied are held in memory (16 MiB packs, 2 cores:
# about 50 MiB, each pack with its copies).
READ_AHEAD = THREADS + 1


def execute(
    repo: Repository, survey: Survey, plan: GcPlan, report: Progress, snapshots: int
) -> GcResult:
    """Carry out `plan` (see the module docstring); `snapshots` is the count gc judged
    plausible, recorded in the census once done. What was done, as a GcResult."""
    return _Executor(repo, survey, plan, report, snapshots).run()


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
        self.index = IndexFiles(
            repo, survey.table, plan, survey.files, survey.generations, survey.floor
        )
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
                self.storage.delete_leftover(leftover)
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
            with closing(in_order(self._verified_blobs, batch, READ_AHEAD)) as verified:
                for position, (r, items) in enumerate(zip(batch, verified, strict=True)):
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
