"""Repository verification: the structure always, every stored byte with `read_data`.

What `check` guarantees:
- It never modifies the repository (the caller may hold a shared lock; nothing else is written).
- It does not stop at the first problem: every finding is collected, as an error (damage: the
  CLI exits 14) or a warning (leftovers such as unindexed packs, stale locks, temporary files).
- Every damaged or missing blob is mapped back through the trees to the snapshots and file paths
  that use it, so the message says what a restore would lose.
- `read_data` streams one pack per worker thread (memory is bounded by a few packs) and verifies
  BLAKE3(pack) against its name and every blob's MAC, size and keyed id.

The retention journal (`dedupe.check.journal`): its chain, and what it says exists and is held
against the manifests and hold records.

Listing order matters: the journal, then snapshots, then index files, then packs, the reverse
of the write order (packs, index, snapshot, journal entry). A snapshot that completes while
check runs is therefore either not seen at all or seen with everything it references already
listed (its journal entry included); it never looks damaged.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing

from dedupe.check.data import PackVerdict, Subset, verify_pack
from dedupe.check.index import IndexSurvey
from dedupe.check.journal import check_journal
from dedupe.check.report import CheckReport
from dedupe.crypto import keys
from dedupe.errors import DamageError, DedupeError, ObjectNotFound
from dedupe.model.snapshot import HoldRecord, Snapshot
from dedupe.model.tree import DIR, FILE, Node, decode_tree
from dedupe.repo import journal as journal_mod
from dedupe.repo import lock as lock_mod
from dedupe.repo.manifests import hold_problems, load_hold_records
from dedupe.repo.manifests import load as load_snapshot
from dedupe.repo.pack import BlobEntry, decode_header, header_span
from dedupe.repo.readahead import in_order
from dedupe.repo.repository import GC_PENDING, Repository, pack_id_from_name, pack_name
from dedupe.repo.treewalk import MAX_DEPTH

__all__ = ["CheckReport", "Subset", "run_check"]

# Paths listed per damaged snapshot; the count of the rest is still reported.
MAX_PATHS_PER_SNAPSHOT = 1000
HEADER_READERS = 8  # header reads are small and latency-bound (sftp, s3): more threads than cores


ProgressFactory = Callable[[int], Callable[[int], None] | None]


class _Checker:
    def __init__(
        self,
        repo: Repository,
        read_data: bool,
        subset: Subset | None,
        workers: int,
        progress: ProgressFactory | None,
        own_lock: str | None,
    ) -> None:
        self.repo = repo
        self.storage = repo.storage
        self.read_data = read_data
        self.subset = subset
        self.workers = max(1, workers)
        self.progress = progress
        self.own_lock = own_lock
        self.report = CheckReport()
        self.snaps: list[Snapshot] = []
        self.manifest_names: list[str] = []
        self.journal = journal_mod.Journal()
        self.hold_records: dict[str, HoldRecord | None] = {}
        self.index = IndexSurvey(repo)
        self.pack_sizes: dict[bytes, int] = {}
        self.header_only_blobs: set[bytes] = set()

    def error(self, text: str) -> None:
        self.report.errors.append(text)

    def warn(self, text: str) -> None:
        self.report.warnings.append(text)

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    def run(self) -> CheckReport:
        self._check_keys()
        # The journal before the manifests: a snapshot writes its manifest, then its entry.
        self.journal = journal_mod.load(self.repo)
        self._load_snapshots()
        self._check_holds()
        check_journal(
            self.journal,
            self.snaps,
            self.manifest_names,
            self.hold_records,
            self.error,
            self.note,
        )
        self._load_index()
        self._list_packs()
        self._check_packs()
        self._check_trees()
        if self.read_data:
            self._read_packs()
        self._check_locks_and_leftovers()
        if self.report.damaged_blobs:
            self._map_damage()
        return self.report

    # --- keys, snapshots, index --------------------------------------------------------------

    def _check_keys(self) -> None:
        # The repository opened, so config and one key file are sound; the others must decode.
        for info in self.storage.list("keys/"):
            try:
                keys.decode_key_file(self.storage.get(info.name))
            except ObjectNotFound:
                continue
            except keys.UnknownKeyVersion as exc:
                self.warn(f"key file {info.name} cannot be used by this dedupe: {exc}")
            except DedupeError as exc:
                self.error(f"key file {info.name} is damaged: {exc}")

    def _load_snapshots(self) -> None:
        self.manifest_names = self.repo.snapshot_names()
        for name in self.manifest_names:
            try:
                snap = load_snapshot(self.repo, name)
            except DamageError as exc:
                self.error(f"snapshot {name[:8]}: manifest is damaged: {exc}")
                continue
            except DedupeError:  # deleted while we listed (forget running elsewhere)
                continue
            self.snaps.append(snap)
            self.report.snapshot_info[snap.id] = (
                f"{snap.short_id()} ({snap.time.isoformat(timespec='seconds')}, {snap.host})"
            )
        self.snaps.sort(key=lambda s: (s.time, s.id))
        self.report.snapshots = len(self.snaps)

    def _check_holds(self) -> None:
        """Every hold record against its manifest (`dedupe.repo.manifests.hold_problems`): a hold
        lost with a deleted or replaced manifest is an error."""
        damaged: list[str] = []
        records = self.hold_records = load_hold_records(self.repo, damaged)
        errors, warnings = hold_problems(self.snaps, self.manifest_names, records)
        for text in damaged + errors:
            self.error(text)
        for text in warnings:
            self.warn(text)

    def _load_index(self) -> None:
        self.report.index_files = self.index.load(self.error, self.warn)

    def _list_packs(self) -> None:
        for info in self.storage.list("data/"):
            pack_id = pack_id_from_name(info.name)
            if pack_id is None:
                self.warn(f"unexpected object {info.name} in data/")
                continue
            self.pack_sizes[pack_id] = info.size
        self.report.packs = len(self.pack_sizes)

    # --- packs against the index -------------------------------------------------------------

    def _mark_damaged(self, blob_ids: Iterable[bytes]) -> None:
        self.report.damaged_blobs.update(blob_ids)

    def _forget_packs_gc_deleted(self) -> None:
        """While `gc-pending` exists, an interrupted gc has deleted garbage packs that older
        index files still name; readers ignore those entries (`Repository.load_index`), and so
        does check. A live blob that was only there is still reported by the tree check."""
        gone = [p for p in self.index.pack_ids if p not in self.pack_sizes]
        if not gone or not self.storage.exists(GC_PENDING):
            return
        self.warn(
            f"{len(gone)} pack(s) the index names were deleted by an interrupted gc; "
            "'dedupe gc' finishes the job"
        )
        self.index.forget(set(gone))

    def _check_packs(self) -> None:
        self._forget_packs_gc_deleted()
        self.index.seal()
        self.report.blobs_indexed = len(self.index)
        for pack_id in self.index.pack_ids:
            if pack_id not in self.pack_sizes:
                entries = self.index.entries(pack_id)
                self.error(
                    f"pack {pack_id.hex()[:16]} is missing ({len(entries)} blobs the index names)"
                )
                self._mark_damaged(entries)
        unindexed = [p for p in self.pack_sizes if not self.index.names(p)]
        if unindexed:
            self.warn(
                f"{len(unindexed)} pack(s) are named by no index file (left by an interrupted "
                "snapshot, or their index file is lost: 'dedupe repair index' rebuilds the index "
                "from the pack headers)"
            )
        ids = sorted(self.pack_sizes)
        headers = in_order(self._read_header, ids, 31, threads=HEADER_READERS)
        with closing(headers):
            for pack_id, result in zip(ids, headers, strict=True):
                self._compare_header(pack_id, result)

    def _read_header(self, pack_id: bytes) -> list[BlobEntry] | DedupeError:
        """The pack's header entries, or the error reading it (returned so one bad pack does
        not stop the others)."""
        size = self.pack_sizes[pack_id]
        name = pack_name(pack_id)
        try:
            tail = self.storage.get(name, size - 4, 4) if size >= 4 else b""
            offset, length = header_span(size, tail)
            sealed = self.storage.get(name, offset, length)
            return decode_header(sealed, self.repo.sealer, size)
        except DedupeError as exc:
            return exc

    def _compare_header(self, pack_id: bytes, result: list[BlobEntry] | DedupeError) -> None:
        short = pack_id.hex()[:16]
        indexed = self.index.entries(pack_id) if self.index.names(pack_id) else None
        size = self.pack_sizes[pack_id]
        if isinstance(result, DedupeError):
            if indexed is None:
                self.warn(f"unindexed pack {short} has an unreadable header: {result}")
                return
            self.error(f"pack {short}: header unreadable: {result}")
            # Without a header, only entries past the end of the file are certainly lost.
            self._mark_damaged(b for b, e in indexed.items() if e.offset + e.length > size - 4)
            return
        if indexed is None:
            self.header_only_blobs.update(e.blob_id for e in result if e.blob_id not in self.index)
            return
        in_header = {e.blob_id: e for e in result}
        wrong = [b for b, e in indexed.items() if in_header.get(b) != e]
        if wrong:
            self.error(
                f"pack {short}: {len(wrong)} of {len(indexed)} index entries disagree with the "
                "pack's header (damaged, or packs renamed)"
            )
            self._mark_damaged(wrong)
        extra = [b for b in in_header if b not in indexed]
        if extra:
            self.warn(f"pack {short}: {len(extra)} blob(s) in its header are not in the index")
            self.header_only_blobs.update(b for b in extra if b not in self.index)

    # --- snapshots' trees --------------------------------------------------------------------

    def _read_blob(self, blob_id: bytes) -> bytes:
        loc = self.index.lookup(blob_id)
        if loc is None:
            raise DamageError(f"blob {blob_id.hex()[:16]} is missing from the index")
        try:
            sealed = self.storage.get(pack_name(loc.pack_id), loc.offset, loc.length)
        except DedupeError as exc:
            raise DamageError(f"pack {loc.pack_id.hex()[:16]} cannot be read: {exc}") from None
        return self.repo.blobs.decode(sealed, blob_id, loc.raw_length)

    def _load_tree(self, tree_id: bytes) -> list[Node]:
        return decode_tree(self._read_blob(tree_id), f"tree {tree_id.hex()[:16]}")

    def _check_trees(self) -> None:
        """Every tree of every snapshot decodes, has no cycle, and every blob is indexed.

        Each distinct tree is read once (iterative DFS; grey = on the current path)."""
        done: set[bytes] = set()
        missing: set[bytes] = set()
        for snap in self.snaps:
            stack: list[tuple[bytes, int, Iterator[bytes] | None]] = [(snap.tree, 0, None)]
            grey: set[bytes] = set()
            while stack:
                tree_id, depth, children = stack[-1]
                if children is None:
                    if tree_id in done:
                        stack.pop()
                        continue
                    subtrees = self._visit_tree(snap, tree_id, depth, missing)
                    grey.add(tree_id)
                    children = iter(subtrees)
                    stack[-1] = (tree_id, depth, children)
                child = next(children, None)
                if child is None:
                    stack.pop()
                    grey.discard(tree_id)
                    done.add(tree_id)
                elif child in grey:
                    self.error(
                        f"snapshot {snap.short_id()}: tree {child.hex()[:16]} contains "
                        "itself (hostile or damaged)"
                    )
                    self._mark_damaged([child])
                elif child not in done:
                    stack.append((child, depth + 1, None))
        self.report.trees = len(done)
        if missing:
            hint = ""
            if missing & self.header_only_blobs:
                hint = (
                    f" ({len(missing & self.header_only_blobs)} of them are in unindexed packs: "
                    "run 'dedupe repair index' to rebuild the index from the pack headers)"
                )
            self.error(f"{len(missing)} blob(s) the snapshots reference are missing{hint}")

    def _visit_tree(
        self, snap: Snapshot, tree_id: bytes, depth: int, missing: set[bytes]
    ) -> list[bytes]:
        """Check one tree; return its subtrees."""
        if depth > MAX_DEPTH:
            self.error(f"snapshot {snap.short_id()}: trees nest implausibly deep")
            self._mark_damaged([tree_id])
            return []
        if tree_id not in self.index:
            missing.add(tree_id)
            self._mark_damaged([tree_id])
            return []
        try:
            nodes = self._load_tree(tree_id)
        except DamageError as exc:
            self.error(f"snapshot {snap.short_id()}: {exc}")
            self._mark_damaged([tree_id])
            return []
        subtrees = []
        for node in nodes:
            if node.type == FILE:
                self.report.data_blobs_referenced += len(node.content)
                for blob_id in node.content:
                    if blob_id not in self.index:
                        missing.add(blob_id)
                        self.report.damaged_blobs.add(blob_id)
            elif node.type == DIR and node.subtree is not None:
                subtrees.append(node.subtree)
        return subtrees

    # --- read data ---------------------------------------------------------------------------

    def _read_packs(self) -> None:
        ids = sorted(self.pack_sizes)
        if self.subset is not None:
            ids = self.subset.select(ids)
        total = sum(self.pack_sizes[p] for p in ids)
        advance = self.progress(total) if self.progress is not None else None

        def task(pack_id: bytes) -> PackVerdict:
            entries = list(self.index.entries(pack_id).values())
            return verify_pack(self.storage, self.repo.blobs, pack_id, entries)

        # A window of workers + 1 packs in flight: both cores busy, memory a few packs.
        verdicts = in_order(task, ids, self.workers, threads=self.workers)
        with closing(verdicts):
            for pack_id, verdict in zip(ids, verdicts, strict=True):
                self.report.packs_read += 1
                self.report.bytes_read += verdict.bytes_read
                self.report.blobs_verified += verdict.blobs_ok
                for text in verdict.errors:
                    self.error(f"pack {pack_id.hex()[:16]}: {text}")
                self._mark_damaged(verdict.damaged)
                if advance is not None:
                    advance(self.pack_sizes[pack_id])

    # --- locks and leftovers -----------------------------------------------------------------

    def _check_locks_and_leftovers(self) -> None:
        locks, broken = lock_mod.list_locks(self.storage, self.repo.sealer)
        host = socket.gethostname()
        now = time.time()
        # Ages by the storage's clock (our own lock's mtime), as the lockers judge them.
        storage_now = lock_mod.storage_clock(self.storage, self.own_lock) if self.own_lock else None
        for lock in locks:
            if lock.name == self.own_lock:
                continue
            if lock.is_stale(now, host, storage_now=storage_now):
                self.warn(f"stale {lock.describe()} ('dedupe unlock' removes it)")
            else:
                self.warn(f"the repository is in use: {lock.describe()}")
        for name in broken:
            self.warn(f"unreadable lock object {name} ('dedupe unlock' removes it)")
        leftovers = list(self.storage.list_leftovers())
        if leftovers:
            self.warn(
                f"{len(leftovers)} temporary file(s) left by interrupted writes "
                f"(e.g. {leftovers[0].name}); 'dedupe gc' removes them once they are a day old"
            )

    # --- damage -> snapshots and paths -------------------------------------------------------

    def _map_damage(self) -> None:
        """Walk every snapshot again and list the paths that use a damaged blob.

        Each distinct tree is read at most once more: clean trees are remembered as clean,
        affected ones by their relative affected paths."""
        damaged = self.report.damaged_blobs
        memo: dict[bytes, list[bytes]] = {}

        def affected(tree_id: bytes, ancestors: frozenset[bytes], depth: int) -> list[bytes]:
            if tree_id in memo:
                return memo[tree_id]
            if tree_id in damaged or tree_id in ancestors or depth > MAX_DEPTH:
                return [b"/ (folder unreadable)"]
            try:
                nodes = self._load_tree(tree_id)
            except DamageError:
                return [b"/ (folder unreadable)"]
            found: list[bytes] = []
            inner = ancestors | {tree_id}
            for node in nodes:
                if len(found) > MAX_PATHS_PER_SNAPSHOT:
                    break
                if node.type == FILE and any(b in damaged for b in node.content):
                    found.append(b"/" + node.name)
                elif node.type == DIR and node.subtree is not None:
                    below = affected(node.subtree, inner, depth + 1)
                    found += [b"/" + node.name + p for p in below]
            memo[tree_id] = found
            return found

        for snap in self.snaps:
            paths = affected(snap.tree, frozenset(), 0)
            if not paths:
                continue
            shown = [os.fsdecode(p) for p in paths[:MAX_PATHS_PER_SNAPSHOT]]
            if len(paths) > MAX_PATHS_PER_SNAPSHOT:
                shown.append("... and more")
            self.report.damaged_snapshots[snap.id] = shown


def run_check(
    repo: Repository,
    read_data: bool = False,
    subset: Subset | None = None,
    workers: int | None = None,
    progress: ProgressFactory | None = None,
    own_lock: str | None = None,
) -> CheckReport:
    """Verify `repo`; `subset` limits which packs read_data reads. Never raises for damage:
    the report lists it (callers decide the exit code). `own_lock` is the caller's lock name,
    not reported as a user of the repository."""
    workers = workers or os.cpu_count() or 2
    checker = _Checker(repo, read_data or subset is not None, subset, workers, progress, own_lock)
    return checker.run()
