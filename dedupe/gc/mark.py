"""Which blobs the snapshots reference: gc's mark phase.

Every tree is read once (an unchanged folder shared by many snapshots is walked once) and what it
references is handed to a `Marks` object, which decides how to remember it: gc's are `TableMarks`,
two flags per row of the survey's entry table (`dedupe.repo.entrytable`), so ten million chunk
ids cost bytes each, not a Python set. Data ids are looked up in vectorised batches.

Without a complete mark nothing may be deleted: a missing or damaged manifest or tree raises
(DamageError) and gc stops before its first deletion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np

from dedupe.errors import FormatError
from dedupe.gc.plan import Entries
from dedupe.gc.result import Progress
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, FILE, decode_tree
from dedupe.repo import manifests
from dedupe.repo.entrytable import EntryTable
from dedupe.repo.index import ChunkIndex
from dedupe.repo.repository import Repository
from dedupe.repo.treewalk import MAX_DEPTH

# Data blob ids looked up per vectorised batch while marking.
MARK_BATCH = 1 << 16


class Marks(Protocol):
    def visit_tree(self, tree_id: bytes) -> bool:
        """Record a tree as reached; False if it was reached before (it is not walked again)."""
        ...

    def add_data(self, blob_ids: Sequence[bytes]) -> None:
        """Record data blobs as reached (the same id may come many times)."""
        ...


class SetMarks:
    """`Marks` in two Python sets: for small repositories and tests."""

    def __init__(self) -> None:
        self.trees: set[bytes] = set()
        self.data: set[bytes] = set()

    def visit_tree(self, tree_id: bytes) -> bool:
        if tree_id in self.trees:
            return False
        self.trees.add(tree_id)
        return True

    def add_data(self, blob_ids: Sequence[bytes]) -> None:
        self.data.update(blob_ids)


class TableMarks:
    """`Marks` as flags on the rows of a sealed `EntryTable`: a row is live when a snapshot
    reaches its id; a tree's row is also flagged walked. `finish` spreads the flags to every
    copy of a reached blob, and `entries` hands rows and flags to the planner."""

    def __init__(self, table: EntryTable) -> None:
        self.table = table
        self.live = np.zeros(table.rows, dtype=bool)
        self._walked = np.zeros(table.rows, dtype=bool)
        self._pending: list[bytes] = []
        self._pending_ids = 0
        self._missing: list[np.ndarray] = []

    def visit_tree(self, tree_id: bytes) -> bool:
        row = self.table.find_row(tree_id)
        if row < 0:
            return True  # reading it fails, and gc stops before deleting anything
        if self._walked[row]:
            return False
        self._walked[row] = self.live[row] = True
        return True

    def add_data(self, blob_ids: Sequence[bytes]) -> None:
        self._pending.append(b"".join(blob_ids))
        self._pending_ids += len(blob_ids)
        if self._pending_ids >= MARK_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        query = np.frombuffer(b"".join(self._pending), dtype=np.uint8).reshape(-1, 32)
        self._pending, self._pending_ids = [], 0
        rows = self.table.locate(query)
        self.live[rows[rows >= 0]] = True
        if (rows < 0).any():
            self._missing.append(query[rows < 0].copy())

    def finish(self) -> int:
        """Spread the marks to every copy of a reached blob; drop the table's search structures
        (gc reads no blob by id after marking). Returns how many reached ids are in no pack."""
        self._flush()
        group_rows, group_starts = self.table.group_rows, self.table.group_starts
        if len(group_rows):
            live = np.logical_or.reduceat(self.live[group_rows], group_starts)
            sizes = np.diff(np.append(group_starts, len(group_rows)))
            self.live[group_rows] = np.repeat(live, sizes)
        missing = 0
        if self._missing:
            ids = np.concatenate(self._missing)
            missing = len(np.unique(ids.view(np.dtype((np.void, 32)))))
        self._missing = []
        self.table.drop_lookups()
        return missing

    def entries(self) -> Entries:
        """The rows and their marks, for the planner (`dedupe.gc.plan.make_plan`)."""
        table = self.table
        return Entries(
            pack=table.pack,
            length=table.fields[:, 1],
            live=self.live,
            group_rows=table.group_rows,
            group_starts=table.group_starts,
        )

    def release(self) -> None:
        """Drop the flags and, in the table, what only planning needed (each row's pack and the
        groups): once planned, gc needs only ids, fields and each pack's ranges."""
        self.live = self._walked = np.zeros(0, dtype=bool)
        self.table.drop_pack_numbers()


def _no_recovery() -> ChunkIndex:
    raise AssertionError("gc's entry table is never damaged: it is no cache")


def mark_snapshots(
    repo: Repository, marks: TableMarks, report: Progress, snaps: list[Snapshot] | None = None
) -> int:
    """Mark every blob the snapshots (by default: all) reach in the table and `finish`; returns
    how many reached ids are in no pack. A damaged manifest or tree aborts gc (DamageError):
    without a complete mark nothing may be deleted."""
    if snaps is None:
        snaps = manifests.load_all(repo)
    count = [0]

    def on_tree(_tree_id: bytes) -> None:
        count[0] += 1
        report("mark", count[0], 0)

    # Trees are read through the table: trees in adopted packs must be readable too.
    with repo.reading_through(ChunkIndex(marks.table, _no_recovery)):
        mark_reachable(repo, [s.tree for s in snaps], marks, on_tree)
    return marks.finish()


def mark_reachable(
    repo: Repository,
    roots: Iterable[bytes],
    marks: Marks,
    on_tree: Callable[[bytes], None] | None = None,
) -> None:
    """Mark every tree and data blob reachable from the root trees. Raises DamageError if a tree
    is missing or damaged (without a complete mark, gc must delete nothing).

    Trees are decoded here, not through `treewalk.load_tree`: each is read once, and its cache
    would hold up to millions of decoded entries that nothing reads again."""
    for root in roots:
        stack = [(root, 0)]
        while stack:
            tree_id, depth = stack.pop()
            if not marks.visit_tree(tree_id):
                continue
            if depth > MAX_DEPTH:
                raise FormatError("snapshot trees nest implausibly deep (hostile or damaged)")
            nodes = decode_tree(repo.read_blob(tree_id), f"tree {tree_id.hex()[:16]}")
            if on_tree is not None:
                on_tree(tree_id)
            for node in nodes:
                if node.type == FILE:
                    if node.content:
                        marks.add_data(node.content)
                elif node.type == DIR and node.subtree is not None:
                    stack.append((node.subtree, depth + 1))
