"""Which blobs the snapshots reference: gc's mark phase.

Every tree is read once (an unchanged folder shared by many snapshots is walked once) and what it
references is handed to a `Marks` object, which decides how to remember it: gc's is a compact
table (`dedupe.gc.indexfiles.EntryTable`), so ten million chunk ids cost bytes each, not a Python
set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from dedupe.errors import FormatError
from dedupe.model.tree import DIR, FILE, decode_tree
from dedupe.repo.repository import Repository
from dedupe.repo.treewalk import MAX_DEPTH


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
