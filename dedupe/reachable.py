"""Which blobs the snapshots reference: the mark phase shared by gc, check and stats.

Trees are read once each (an unchanged folder shared by many snapshots is walked once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dedupe.errors import FormatError
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, FILE
from dedupe.repo.repository import Repository
from dedupe.treewalk import MAX_DEPTH, load_tree


def referenced_blobs(
    repo: Repository,
    snaps: Iterable[Snapshot],
    on_tree: Callable[[bytes], None] | None = None,
) -> tuple[set[bytes], set[bytes]]:
    """(tree ids, data blob ids) referenced by `snaps`. Raises DamageError if a tree is
    missing or damaged (callers that must go on, like check, catch it per snapshot)."""
    trees: set[bytes] = set()
    data: set[bytes] = set()
    for snap in snaps:
        stack = [(snap.tree, 0)]
        while stack:
            tree_id, depth = stack.pop()
            if tree_id in trees:
                continue
            if depth > MAX_DEPTH:
                raise FormatError("snapshot trees nest implausibly deep (hostile or damaged)")
            nodes = load_tree(repo, tree_id)
            trees.add(tree_id)
            if on_tree is not None:
                on_tree(tree_id)
            for node in nodes:
                if node.type == FILE:
                    data.update(node.content)
                elif node.type == DIR and node.subtree is not None:
                    stack.append((node.subtree, depth + 1))
    return trees, data
