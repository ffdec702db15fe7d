"""Read back every blob of some snapshots: the proof an archive asks for before it counts a copy.

`read_back` loads the repository's index afresh from its index files (so a copy is judged by
what is stored, not by what the writer remembers), then reads and verifies every tree and every
data blob the snapshots reference: the pack range must exist, its MAC must open and the keyed id
of the plaintext must match. It never stops at the first problem: every unreadable blob is
counted and the first few are named. It writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

from dedupe.errors import DamageError, DedupeError
from dedupe.model.tree import FILE
from dedupe.repo import manifests
from dedupe.repo.repository import Repository
from dedupe.repo.treewalk import DAMAGED, TREE, read_tree, traverse

MAX_NAMED = 10


@dataclass
class ReadBack:
    """What reading back found: blobs and bytes verified, and the problems (empty: all good)."""

    blobs: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    damaged_blobs: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and self.damaged_blobs == 0


def read_back(repo: Repository, snapshot_ids: Iterable[str]) -> ReadBack:
    """Verify every blob of the snapshots `snapshot_ids` in `repo` (see the module docstring)."""
    result = ReadBack()
    repo.forget_index()
    roots = []
    for sid in snapshot_ids:
        try:
            roots.append(manifests.load(repo, sid).tree)
        except DedupeError as exc:
            result.problems.append(f"snapshot {sid[:8]}: {exc}")
    seen_trees: set[bytes] = set()
    data: set[bytes] = set()

    def first_visit(tree_id: bytes) -> bool:
        if tree_id in seen_trees:
            return False
        seen_trees.add(tree_id)
        return True

    load = partial(read_tree, repo)
    for visit in traverse(load, roots, first_visit=first_visit, entries=False, report_damage=True):
        if visit.kind == DAMAGED:
            result.damaged_blobs += 1
            _name(result, f"tree {visit.tree_id.hex()[:16]}: {visit.error}")
        elif visit.kind == TREE:
            result.blobs += 1
            for node in visit.nodes:
                if node.type == FILE:
                    data.update(node.content)
    for blob_id in sorted(data, key=partial(_where, repo)):
        outcome = repo.read_blob_or_error(blob_id)
        if isinstance(outcome, DamageError):
            result.damaged_blobs += 1
            _name(result, str(outcome))
        else:
            result.blobs += 1
            result.bytes += len(outcome)
    repo.forget_index()
    return result


def _where(repo: Repository, blob_id: bytes) -> tuple[bytes, int]:
    """Pack order, so neighbouring blobs are read one after another; unknown ones first."""
    loc = repo.index.lookup(blob_id)
    return (b"", 0) if loc is None else (loc.pack_id, loc.offset)


def _name(result: ReadBack, text: str) -> None:
    if len(result.problems) < MAX_NAMED:
        result.problems.append(text)
