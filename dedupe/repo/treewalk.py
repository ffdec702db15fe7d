"""Reading snapshot trees: the one traversal every operation uses, and what is built on it.

`traverse` is the only walk over snapshot trees (restore, ls, copy, stats, the entry count; gc,
check and backup are meant to use it too). It guarantees, whatever a hostile repository holds:
- it is iterative: no chain of trees can exhaust the Python stack;
- one depth limit, `MAX_DEPTH`: a tree below it raises `TreesTooDeep` before it is read (or is
  reported, for a caller that must go on, such as check); a tree that names itself ends there;
- with `first_visit`, each tree is walked once however many folders share it (gc, copy, stats),
  so trees naming each other exponentially cost one visit each;
- a tree that cannot be read raises its DamageError, or with `report_damage` becomes one
  DAMAGED visit standing for the folder's lost contents, and the walk goes on (restore);
- visits come in the stored order, depth first: a folder's ENTRY, then its tree (TREE, its
  entries...), then LEAVE once its whole subtree is done; nothing is read ahead.

`count_entries` bounds how many entries a snapshot expands to (before a restore, ls or diff
starts), `walk` lists paths (ls), `find` resolves one path, `diff` compares two trees.
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import NamedTuple

from dedupe.errors import DamageError, FormatError, TreesTooDeep, UsageError
from dedupe.model.tree import DIR, Node, decode_tree
from dedupe.repo.repository import Repository

MAX_DEPTH = 400
"""Folders nested deeper than this are hostile or damaged: every walk refuses them."""
MAX_ENTRIES = 200_000_000
"""Far beyond any real snapshot, far below what a few hostile trees naming each other expand to."""


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


def read_tree(repo: Repository, tree_id: bytes) -> list[Node]:
    """The decoded tree, read and verified now, never cached: for walks that visit each tree
    once (gc's mark), where a cache would only hold millions of entries nothing reads again."""
    return decode_tree(repo.read_blob(tree_id), f"tree {tree_id.hex()[:16]}")


def load_tree(repo: Repository, tree_id: bytes) -> list[Node]:
    """The decoded tree (from the repository's tree cache when it was decoded recently)."""
    cache = _caches.get(repo)
    if cache is None:
        cache = _caches[repo] = TreeCache()
    nodes = cache.get(tree_id)
    if nodes is None:
        nodes = read_tree(repo, tree_id)
        cache.put(tree_id, nodes)
    return nodes


TreeLoader = Callable[[bytes], Sequence[Node]]
"""tree id -> its entries; raises DamageError when the tree cannot be read. `partial(load_tree,
repo)` (cached) or `partial(read_tree, repo)` (each tree once), or a caller's own (check)."""
Path = tuple[bytes, ...]
"""Names from the root tree down (the root itself is ())."""

TREE = "tree"
ENTRY = "entry"
LEAVE = "leave"
DAMAGED = "damaged"


class Visit(NamedTuple):
    """One step of `traverse`.

    - TREE: the tree `tree_id` at `path` was read: `nodes` are its entries.
    - ENTRY: one entry, `node`, at `path` (its own name last).
    - LEAVE: everything below the tree `tree_id` at `path` is done; `nodes` as at TREE ([] for a
      damaged tree).
    - DAMAGED: the tree `tree_id` at `path` could not be read (`error` says why): the folder's
      contents are lost; its LEAVE follows. Only with `report_damage` / `report_too_deep`.

    `folder` is the entry that names the tree (None for a root); `depth` the tree's nesting
    (0 for a root; an ENTRY has its tree's depth).
    """

    kind: str
    path: Path
    node: Node | None = None
    tree_id: bytes = b""
    nodes: Sequence[Node] = ()
    depth: int = 0
    error: DamageError | None = None
    folder: Node | None = None


_new_visit = tuple.__new__


class _Frame(NamedTuple):
    entries: Iterator[Node]
    path: Path
    depth: int
    tree_id: bytes
    nodes: Sequence[Node]
    folder: Node | None


def traverse(
    load: TreeLoader,
    roots: Iterable[bytes],
    *,
    first_visit: Callable[[bytes], bool] | None = None,
    descend: Callable[[Path, Node], bool] | None = None,
    entries: bool = True,
    report_damage: bool = False,
    report_too_deep: bool = False,
) -> Iterator[Visit]:
    """Walk the trees below each root, depth first in stored order (see the module docstring).

    `first_visit(tree_id)` is asked before a tree (a root too) is walked: False skips it. It is
    where a caller keeps its table of visited trees (a set, gc's compact table), so each tree is
    walked once. `descend(path, node)` is asked for each folder entry: False leaves its subtree
    out. Without `entries`, ENTRY visits are not made (TREE visits carry every entry anyway).
    `report_damage` turns a tree that cannot be read into a DAMAGED visit instead of raising its
    DamageError; `report_too_deep` does the same for a tree below MAX_DEPTH (TreesTooDeep).
    """
    for root in roots:
        if first_visit is None or first_visit(root):
            yield from _walk_one(
                load, root, first_visit, descend, entries, report_damage, report_too_deep
            )


def _walk_one(
    load: TreeLoader,
    root: bytes,
    first_visit: Callable[[bytes], bool] | None,
    descend: Callable[[Path, Node], bool] | None,
    entries: bool,
    report_damage: bool,
    report_too_deep: bool,
) -> Iterator[Visit]:
    stack: list[_Frame] = []
    # The tree to open next: (tree id, path, depth, the folder entry naming it).
    pending: tuple[bytes, Path, int, Node | None] | None = (root, (), 0, None)
    while True:
        if pending is not None:
            tree_id, path, depth, folder = pending
            pending = None
            nodes: Sequence[Node] = ()
            try:
                if depth > MAX_DEPTH:
                    raise TreesTooDeep()
                nodes = load(tree_id)
            except TreesTooDeep as exc:
                if not report_too_deep:
                    raise
                yield Visit(DAMAGED, path, None, tree_id, (), depth, exc, folder)
            except DamageError as exc:
                if not report_damage:
                    raise
                yield Visit(DAMAGED, path, None, tree_id, (), depth, exc, folder)
            else:
                yield Visit(TREE, path, None, tree_id, nodes, depth, None, folder)
            stack.append(_Frame(iter(nodes), path, depth, tree_id, nodes, folder))
        if not stack:
            return
        frame = stack[-1]
        parent, depth = frame.path, frame.depth  # locals: this loop runs once per entry
        for node in frame.entries:
            subtree = node.subtree if node.type == DIR else None
            if entries:
                path = parent + (node.name,)
                # tuple.__new__: a NamedTuple's own constructor costs a Python call per entry
                yield _new_visit(Visit, (ENTRY, path, node, b"", (), depth, None, None))
            elif subtree is None:
                continue
            else:
                path = parent + (node.name,)
            if subtree is None or (descend is not None and not descend(path, node)):
                continue
            if first_visit is None or first_visit(subtree):
                pending = (subtree, path, depth + 1, node)
                break
        else:
            stack.pop()
            yield Visit(LEAVE, parent, None, frame.tree_id, frame.nodes, depth, None, frame.folder)


def walk(repo: Repository, tree_id: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Node]]:
    """(absolute path, node) for every entry below the tree, depth first, in stored order
    (sorted by name); DamageError for a tree that cannot be read."""
    for visit in traverse(partial(load_tree, repo), [tree_id]):
        if visit.kind == ENTRY:
            assert visit.node is not None
            yield prefix + b"/" + b"/".join(visit.path), visit.node


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
    started: set[bytes] = set()

    def first_visit(tree_id: bytes) -> bool:
        if tree_id in started:
            return False
        started.add(tree_id)
        return True

    for visit in traverse(
        partial(load_tree, repo),
        [root],
        first_visit=first_visit,
        entries=False,
        report_damage=skip_damaged,
    ):
        if visit.kind != LEAVE:
            continue
        total = 0
        for node in visit.nodes:
            total += 1
            if node.type == DIR and node.subtree is not None:
                below = sizes.get(node.subtree)
                if below is None:  # started, not finished: the folder contains itself
                    raise TreesTooDeep()
                total += below
            if total > limit:
                raise FormatError(
                    f"the snapshot expands to more than {limit} entries (hostile or damaged)"
                )
        sizes[visit.tree_id] = total
    return sizes[root]


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
    repo: Repository, a: bytes | None, b: bytes | None, prefix: bytes = b""
) -> Iterator[tuple[str, bytes]]:
    """('+'|'-'|'M', path) for entries added, removed or changed from tree a to tree b.

    Two trees side by side, so not `traverse`, but iterative like it: one level per folder
    that differs, and past MAX_DEPTH it stops comparing (`count_entries` refuses such trees
    before a diff starts)."""
    levels = [_diff_level(repo, a, b, prefix)]
    while levels:
        item = next(levels[-1], None)
        if item is None:
            levels.pop()
            continue
        sign, path, sub_a, sub_b = item
        if sign != _DESCEND:
            yield sign, path
        elif sub_a != sub_b and len(levels) <= MAX_DEPTH:  # the new level's depth: len(levels)
            levels.append(_diff_level(repo, sub_a, sub_b, path))


_DESCEND = ">"
_DiffItem = tuple[str, bytes, bytes | None, bytes | None]


def _diff_level(
    repo: Repository, a: bytes | None, b: bytes | None, prefix: bytes
) -> Iterator[_DiffItem]:
    """One folder of `diff`: its changes in name order, and (_DESCEND, path, a, b) where the
    folders below must be compared too."""
    if a == b:
        return
    old = {n.name: n for n in load_tree(repo, a)} if a else {}
    new = {n.name: n for n in load_tree(repo, b)} if b else {}
    for name in sorted(old.keys() | new.keys()):
        path = prefix + b"/" + name
        before, after = old.get(name), new.get(name)
        if before is None or after is None:
            present = after if before is None else before
            assert present is not None
            yield ("+" if before is None else "-"), path, None, None
            if present.type == DIR and present.subtree:
                sub_a = None if before is None else present.subtree
                sub_b = present.subtree if before is None else None
                yield _DESCEND, path, sub_a, sub_b
            continue
        if before.type == DIR and after.type == DIR:
            if before.mode != after.mode or before.mtime_ns != after.mtime_ns:
                if before.subtree == after.subtree:
                    yield "M", path, None, None
            yield _DESCEND, path, before.subtree, after.subtree
        elif before != after:
            if before.type != after.type:
                yield "-", path, None, None
                yield "+", path, None, None
            else:
                yield "M", path, None, None
