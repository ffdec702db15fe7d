"""Reading snapshot trees by path: walk all entries, find one path, compare two trees."""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from collections.abc import Iterator

from dedupe.errors import DamageError, FormatError, UsageError
from dedupe.model.tree import DIR, Node, decode_tree
from dedupe.repo.repository import Repository

MAX_DEPTH = 400
# Far beyond any real snapshot, far below what a few hostile trees naming each other expand to.
MAX_ENTRIES = 200_000_000


class TreeCache:
    """Recently decoded trees, bounded by their total number of entries.

    A restore walks the trees twice (count, then create) and ls/diff/gc revisit shared
    folders; decoding each tree once saves a read, a decryption and a decode per visit.
    """

    def __init__(self, max_entries: int = 2_000_000) -> None:
        self.max_entries = max_entries
        self._trees: OrderedDict[bytes, list[Node]] = OrderedDict()
        self._entries = 0

    def get(self, tree_id: bytes) -> list[Node] | None:
        nodes = self._trees.get(tree_id)
        if nodes is not None:
            self._trees.move_to_end(tree_id)
        return nodes

    def put(self, tree_id: bytes, nodes: list[Node]) -> None:
        if tree_id in self._trees:
            return
        self._trees[tree_id] = nodes
        self._entries += len(nodes) + 1
        while self._entries > self.max_entries and self._trees:
            _old_id, old = self._trees.popitem(last=False)
            self._entries -= len(old) + 1


_caches: weakref.WeakKeyDictionary[Repository, TreeCache] = weakref.WeakKeyDictionary()


def load_tree(repo: Repository, tree_id: bytes) -> list[Node]:
    """The decoded tree (from the repository's tree cache when it was decoded recently)."""
    cache = _caches.get(repo)
    if cache is None:
        cache = _caches[repo] = TreeCache()
    nodes = cache.get(tree_id)
    if nodes is None:
        nodes = decode_tree(repo.read_blob(tree_id), f"tree {tree_id.hex()[:16]}")
        cache.put(tree_id, nodes)
    return nodes


def walk(
    repo: Repository, tree_id: bytes, prefix: bytes = b"", depth: int = 0
) -> Iterator[tuple[bytes, Node]]:
    """(absolute path, node) for every entry below the tree, depth first, sorted by name."""
    if depth > MAX_DEPTH:
        raise FormatError("snapshot trees nest implausibly deep (hostile or damaged)")
    for node in load_tree(repo, tree_id):
        path = prefix + b"/" + node.name
        yield path, node
        if node.type == DIR and node.subtree is not None:
            yield from walk(repo, node.subtree, path, depth + 1)


def count_entries(
    repo: Repository, root: bytes, limit: int = MAX_ENTRIES, skip_damaged: bool = False
) -> int:
    """How many entries the snapshot expands to, computed with each tree loaded once.

    Folders shared by several places (honest: identical or empty folders) are counted once per
    place, as a restore creates them; the count refuses (FormatError) before it passes `limit`,
    so trees that name each other exponentially fail fast instead of running for hours. With
    `skip_damaged`, a tree that cannot be read counts as empty (a restore reports it when it
    gets there, and restores everything else) instead of raising its DamageError.
    """
    sizes: dict[bytes, int] = {}

    def size(tree_id: bytes, depth: int) -> int:
        if tree_id in sizes:
            return sizes[tree_id]
        if depth > MAX_DEPTH:
            raise FormatError("snapshot trees nest implausibly deep (hostile or damaged)")
        try:
            nodes = load_tree(repo, tree_id)
        except DamageError:
            if not skip_damaged:
                raise
            nodes = []
        total = 0
        for node in nodes:
            total += 1
            if node.type == DIR and node.subtree is not None:
                total += size(node.subtree, depth + 1)
            if total > limit:
                raise FormatError(
                    f"the snapshot expands to more than {limit} entries (hostile or damaged)"
                )
        sizes[tree_id] = total
        return total

    return size(root, 0)


def split_path(path: str | bytes) -> list[bytes]:
    raw = os.fsencode(path)
    return [p for p in raw.split(b"/") if p and p != b"."]


def find(repo: Repository, root: bytes, path: str | bytes) -> tuple[bytes, Node | None]:
    """The node at `path` (None for the root itself), or UsageError if there is none."""
    parts = split_path(path)
    tree_id: bytes | None = root
    node: Node | None = None
    for i, part in enumerate(parts):
        if tree_id is None:
            raise UsageError(f"{os.fsdecode(path)}: not in the snapshot")
        match = [n for n in load_tree(repo, tree_id) if n.name == part]
        if not match:
            raise UsageError(f"{os.fsdecode(path)}: not in the snapshot")
        node = match[0]
        tree_id = node.subtree if node.type == DIR else None
        if node.type != DIR and i != len(parts) - 1:
            raise UsageError(f"{os.fsdecode(path)}: not in the snapshot")
    return b"/" + b"/".join(parts), node


def diff(
    repo: Repository, a: bytes | None, b: bytes | None, prefix: bytes = b"", depth: int = 0
) -> Iterator[tuple[str, bytes]]:
    """('+'|'-'|'M', path) for entries added, removed or changed from tree a to tree b."""
    if a == b or depth > MAX_DEPTH:
        return
    old = {n.name: n for n in load_tree(repo, a)} if a else {}
    new = {n.name: n for n in load_tree(repo, b)} if b else {}
    for name in sorted(old.keys() | new.keys()):
        path = prefix + b"/" + name
        before, after = old.get(name), new.get(name)
        if before is None or after is None:
            present = after if before is None else before
            assert present is not None
            sign = "+" if before is None else "-"
            yield sign, path
            if present.type == DIR and present.subtree:
                sub_a = None if before is None else present.subtree
                sub_b = present.subtree if before is None else None
                yield from diff(repo, sub_a, sub_b, path, depth + 1)
            continue
        if before.type == DIR and after.type == DIR:
            if before.mode != after.mode or before.mtime_ns != after.mtime_ns:
                if before.subtree == after.subtree:
                    yield "M", path
            yield from diff(repo, before.subtree, after.subtree, path, depth + 1)
        elif before != after:
            if before.type != after.type:
                yield "-", path
                yield "+", path
            else:
                yield "M", path
