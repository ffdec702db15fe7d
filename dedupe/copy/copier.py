"""Copy snapshots from one repository to another, re-encrypting everything for the destination.

A snapshot keeps its id in the destination, so a second copy finds it there and skips it (copy is
idempotent, and a copy killed in the middle is finished by the next run). Nothing sealed is ever
carried across: every blob is opened and verified with the source key and sealed afresh with the
destination key.

Two ways, chosen per destination:
- *Same ids* (the destination was made with `init --copy-chunker-params-from` the source, or the
  other way round): both repositories share the id key, so a blob has the same id in both and the
  source's trees are valid in the destination as they are. Only blobs the destination lacks are
  read and written.
- *Re-chunk* (unrelated keys): ids differ, so every file is streamed from the source blob by blob
  through the destination's chunker and id key, and the trees are rebuilt with the new ids
  (`dedupe.copy.rechunk`). The destination's dedup still applies; folders and files already
  translated
  in this run are not read twice.

Write order at the destination, as for a snapshot: packs, then the index naming them (`flush`),
then the manifests. A crash leaves at most unreferenced packs (gc removes them) and never a
manifest naming something absent. Locks are the caller's business (shared on both sides: copy
only adds).

Holds travel with the snapshots (never a release): a snapshot held in the source (its manifest
says so, or a hold record names it) is held in the destination with the source's reason, through
`manifests.hold`, so the destination gets its hold record too. That also applies to a snapshot
the destination already has: a hold added in the source after an earlier copy reaches the drive
on the next copy. A destination that holds more than the source (an archive) is left alone.
A shared lock on the destination is enough for that (`manifests.hold` speaks of the exclusive
one): what must not race a hold is `forget`, `release` and `hold`, which all take the exclusive
lock, so none of them runs beside a copy; two copies holding the same snapshot write the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial

from dedupe.copy.rechunk import Rechunker
from dedupe.errors import DamageError, OutOfSpace, UsageError
from dedupe.model.snapshot import HoldRecord, Snapshot
from dedupe.model.tree import FILE
from dedupe.repo import manifests
from dedupe.repo.index import Location
from dedupe.repo.readahead import read_blobs
from dedupe.repo.repository import Repository
from dedupe.repo.treewalk import TREE, load_tree, traverse
from dedupe.repo.writer import BlobWriter

Progress = Callable[[int], None]  # plaintext bytes handled since the last call

# Manifests are saved (after a flush) once this much new data was queued: a killed copy loses
# at most this much work, and flushes do not leave a half-empty pack after every small snapshot.
COMMIT_BYTES = 256 << 20


def usable_space(free: int) -> int:
    """Of `free` bytes on a destination, what a copy may plan to fill: the rest is left for the
    index, the manifests and a later gc (which needs a little room to free a lot)."""
    return max(0, free - min(64 << 20, free // 20) - (1 << 20))


@dataclass
class CopyResult:
    """What a copy did. `copied` and `skipped` hold source snapshot ids; `held` those of
    `skipped` (already in the destination) that this run held there, with the reason each got
    in `hold_reasons`; `warnings` what could not be read but did not stop the copy."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    hold_reasons: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    same_ids: bool = False
    blobs_added: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    # When the destination is full: the snapshots that did not fit (source ids, oldest first),
    # about how many more bytes they need, and the free space seen before the copy.
    not_copied: list[str] = field(default_factory=list)
    short_bytes: int | None = None
    needed_bytes: int | None = None  # what the copy was estimated to add (same ids only)
    free_bytes: int | None = None


def shares_blob_ids(source: Repository, dest: Repository) -> bool:
    """True when a blob has the same id in both repositories (the cheap path applies).

    The id key alone decides that: trees name blobs by keyed hash of their plaintext. The
    chunker seed and sizes only decide how well new data deduplicates against old."""
    return source.key.id_key == dest.key.id_key


def select(source: Repository, dest: Repository, specs: Iterable[str]) -> list[Snapshot]:
    """The source snapshots to consider: those named (id, prefix, `latest`), or all; oldest
    first, so a killed copy has finished the older ones."""
    specs = list(specs)
    if specs:
        chosen = {s.id: s for s in (manifests.resolve(source, spec) for spec in specs)}
        return sorted(chosen.values(), key=lambda s: (s.time, s.id))
    return manifests.load_all(source)


# --- the copy ----------------------------------------------------------------------------------


class Copier:
    """Copies snapshots from `source` to `dest` (both open, both locked by the caller)."""

    def __init__(
        self,
        source: Repository,
        dest: Repository,
        workers: int = 4,
        progress: Progress | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if source.settings.repo_id == dest.settings.repo_id:
            raise UsageError("the source and the destination are the same repository")
        self.source = source
        self.dest = dest
        self.workers = workers
        self.progress = progress or (lambda _n: None)
        self.now = now or (lambda: datetime.now(UTC))  # the time a hold record gives its hold
        self.result = CopyResult(same_ids=shares_blob_ids(source, dest))
        self._source_records: dict[str, HoldRecord | None] = {}
        self.commit_bytes = COMMIT_BYTES
        self._left_out: list[Snapshot] = []  # left out before copying: they would not fit

    def run(self, candidates: list[Snapshot]) -> CopyResult:
        """Copy every candidate the destination lacks, and carry the source's holds onto those
        it already has; return what was done.

        A destination too small for everything gets what fits, oldest first and whole
        snapshots only: with shared ids the need of each snapshot is known before anything is
        written (the blobs it adds that the destination lacks), so only the snapshots that fit
        are copied; otherwise, and when the estimate was wrong, a full disk in the middle aborts
        that batch (its packs are deleted again), and the rest is retried one snapshot at a time
        until one does not fit. `result.not_copied` then names the rest and `short_bytes` says
        about how much more they need; the caller reports it (exit 13)."""
        self._source_records = manifests.load_hold_records(self.source, self.result.warnings)
        present = set(self.dest.snapshot_names())
        todo = []
        for snap in candidates:
            if snap.id in present:
                self.result.skipped.append(snap.id)
            else:
                todo.append(snap)
        self._carry_holds([s for s in candidates if s.id in present])
        if not todo:
            return self.result
        free = self.dest.storage.free_space()
        self.result.free_bytes = free
        if self.result.same_ids:
            needs = self._needs(todo)
            self.result.needed_bytes = sum(needs)
            if free is not None and sum(needs) > usable_space(free):
                fitting = _prefix_that_fits(needs, usable_space(free))
                self._left_out = todo[fitting:]
                self.result.not_copied = [s.id for s in self._left_out]
                self.result.short_bytes = sum(needs) - usable_space(free)
                todo = todo[:fitting]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="copy-read") as pool:
            self._copy_what_fits(todo, pool)
        return self.result

    def _copy_what_fits(self, todo: list[Snapshot], pool: ThreadPoolExecutor) -> None:
        while todo:
            try:
                if self.result.same_ids:
                    self._copy_same_ids(todo, pool)
                else:
                    self._copy_rechunked(todo, pool)
                return
            except OutOfSpace:
                done = set(self.result.copied)
                left = [s for s in todo if s.id not in done]
                if self.commit_bytes == 0 and left and left == todo:
                    # Even the oldest one left does not fit on its own: stop here.
                    self._stop_full(left)
                    return
                self.commit_bytes = 0  # from now on one snapshot per commit
                todo = left

    def _stop_full(self, left: list[Snapshot]) -> None:
        """The destination filled up with `left` still to copy: name them and what they need
        beyond the space that is free now."""
        remaining = left + self._left_out
        self.result.not_copied = [s.id for s in remaining]
        need = sum(self._needs(remaining, lacking_only=self.result.same_ids))
        free = self.dest.storage.free_space()
        self.result.short_bytes = max(1, need - usable_space(free or 0))

    def _needs(self, todo: list[Snapshot], lacking_only: bool = True) -> list[int]:
        """For each snapshot in order, the stored bytes of the blobs it adds that no earlier
        snapshot of `todo` has and (with `lacking_only`, right when ids are shared) that the
        destination lacks; without it, an upper bound when ids differ (the destination may
        already hold some of it under other ids)."""
        seen_trees: set[bytes] = set()
        counted: set[bytes] = set()
        needs = []
        for snap in todo:
            size = 0
            for blob_id in self._unseen_blobs(snap.tree, seen_trees):
                if blob_id in counted or (lacking_only and blob_id in self.dest.index):
                    continue
                counted.add(blob_id)
                size += self.source.locate(blob_id).raw_length
            needs.append(size)
        return needs

    # --- holds -------------------------------------------------------------------------------

    def _source_hold(self, snap: Snapshot) -> Snapshot:
        """`snap` as the source holds it: held when its manifest or a hold record says so, with
        the manifest's reason, else the record's."""
        held = manifests.held_by_record(snap, self._source_records)
        if held.held and held.hold_reason is None:
            record = self._source_records.get(snap.id)
            if record is not None and record.reason is not None:
                held = held.with_hold(True, record.reason)
        return held

    def _carry_holds(self, already_there: list[Snapshot]) -> None:
        """Hold in the destination what the source holds among the snapshots it already has:
        when the destination does not hold it, holds it with another reason, or has no hold
        record for it (a copy interrupted between manifest and record). Never releases; a
        source hold without a reason keeps the destination's reason (as `dedupe hold` does)."""
        wanted = [s for s in map(self._source_hold, already_there) if s.held]
        if not wanted:
            return
        dest_records = manifests.load_hold_records(self.dest, self.result.warnings)
        for snap in wanted:
            try:
                there = manifests.load(self.dest, snap.id)  # its own tree ids when re-chunked
            except DamageError as exc:
                self.result.warnings.append(
                    f"destination snapshot {snap.short_id()}: {exc}; its hold was not carried"
                )
                continue
            except UsageError:
                continue  # deleted meanwhile: nothing to hold
            reason = snap.hold_reason
            if reason is None and there.held:
                reason = there.hold_reason
            if there.held and there.hold_reason == reason and snap.id in dest_records:
                continue
            manifests.hold(self.dest, there, reason, self.now())
            self.result.held.append(snap.id)
            self.result.hold_reasons[snap.id] = reason

    def _commit(self, writer: BlobWriter, done: list[Snapshot]) -> None:
        """Flush (packs, then index), then save the manifests that only now may name them."""
        writer.flush()
        self.result.blobs_added += writer.stats.blobs_new
        self.result.bytes_added += writer.stats.stored_bytes
        for snap in done:
            snap = self._source_hold(snap)
            self.result.bytes_added += manifests.save(self.dest, snap)
            if snap.held:
                # The manifest is saved held already, then `manifests.hold` writes the record
                # (and leaves the manifest, unchanged). The other way round, a crash between
                # the two would leave a record without its manifest, which `check` reports as
                # a deleted held snapshot. This way a crash leaves a held manifest without its
                # record: `forget` keeps it, `check` warns, and the next copy, finding the
                # snapshot there without a record, writes it (`_carry_holds`). Never an
                # unheld copy of a held snapshot.
                manifests.hold(self.dest, snap, snap.hold_reason, self.now())
            self.result.copied.append(snap.id)

    def _copy_same_ids(self, todo: list[Snapshot], pool: ThreadPoolExecutor) -> None:
        """Blob ids are shared: copy the blobs the destination lacks, keep the trees as they
        are. Snapshots are committed in batches of about COMMIT_BYTES of new data."""
        seen_trees: set[bytes] = set()
        missing: set[bytes] = set()
        size = 0
        batch: list[Snapshot] = []
        for i, snap in enumerate(todo):
            for blob_id in self._unseen_blobs(snap.tree, seen_trees):
                if blob_id not in missing and blob_id not in self.dest.index:
                    missing.add(blob_id)
                    size += self.source.locate(blob_id).raw_length
            batch.append(snap)
            if size < self.commit_bytes and i != len(todo) - 1:
                continue  # a bigger batch: fewer flushes, fuller packs
            # Read in pack order: neighbouring blobs come with one request.
            ordered = sorted(missing, key=lambda b: _sort_key(self.source.locate(b)))
            writer = BlobWriter(self.dest, workers=self.workers)
            try:
                for blob_id, plaintext in read_blobs(self.source, ordered, pool):
                    writer.add_with_id(blob_id, plaintext)
                    self.result.bytes_read += len(plaintext)
                    self.progress(len(plaintext))
                self._commit(writer, batch)
            except BaseException:
                writer.abort()
                raise
            batch, missing, size = [], set(), 0

    def _unseen_blobs(self, root: bytes, seen_trees: set[bytes]) -> Iterator[bytes]:
        """Tree and data ids below `root`, skipping trees this run already walked (their blobs
        were queued with an earlier snapshot). Every tree is loaded, so a damaged one stops the
        copy before its snapshot is saved."""

        def first_visit(tree_id: bytes) -> bool:
            if tree_id in seen_trees:
                return False
            seen_trees.add(tree_id)
            return True

        load = partial(load_tree, self.source)
        for visit in traverse(load, [root], first_visit=first_visit, entries=False):
            if visit.kind == TREE:
                yield visit.tree_id
                for node in visit.nodes:
                    if node.type == FILE:
                        yield from node.content

    def _copy_rechunked(self, todo: list[Snapshot], pool: ThreadPoolExecutor) -> None:
        """Ids differ: rebuild every tree with the destination's chunker and id key."""
        rechunker = Rechunker(self.source, self.dest, pool, self._on_bytes)
        rechunker.seed_from_copies(todo)
        writer = BlobWriter(self.dest, workers=self.workers)
        batch: list[Snapshot] = []
        queued = 0
        try:
            for i, snap in enumerate(todo):
                before = self.result.bytes_read
                root = rechunker.copy_tree(writer, snap.tree)
                batch.append(replace(snap, tree=root))
                queued += self.result.bytes_read - before
                if queued >= self.commit_bytes or i == len(todo) - 1:
                    self._commit(writer, batch)
                    batch, queued = [], 0
                    if i != len(todo) - 1:
                        writer = BlobWriter(self.dest, workers=self.workers)
        except BaseException:
            writer.abort()
            raise

    def _on_bytes(self, n: int) -> None:
        self.result.bytes_read += n
        self.progress(n)


def _prefix_that_fits(needs: list[int], room: int) -> int:
    """How many of the first snapshots fit in `room` bytes together."""
    total = 0
    for count, need in enumerate(needs):
        total += need
        if total > room:
            return count
    return len(needs)


def _sort_key(loc: Location) -> tuple[bytes, int]:
    return loc.pack_id, loc.offset
