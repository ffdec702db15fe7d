"""Reading snapshot trees by path: walk all entries, find one path, compare two trees."""

from __future__ import annotations

import os
from collections.abc import Iterator

from dedupe.errors import FormatError, UsageError
from dedupe.model.tree import DIR, Node, decode_tree
from dedupe.repo.repository import Repository

MAX_DEPTH = 400
# Far beyond any real snapshot, far below what a few hostile trees naming each other expand to.
MAX_ENTRIES = 200_000_000


def load_tree(repo: Repository, tree_id: bytes) -> list[Node]:
    return decode_tree(repo.read_blob(tree_id), f"tree {tree_id.hex()[:16]}")


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


def count_entries(repo: Repository, root: bytes, limit: int = MAX_ENTRIES) -> int:
    """How many entries the snapshot expands to, computed with each tree loaded once.

    Folders shared by several places (honest: identical or empty folders) are counted once per
    place, as a restore creates them; the count refuses (FormatError) before it passes `limit`,
    so trees that name each other exponentially fail fast instead of running for hours.
    """
    sizes: dict[bytes, int] = {}

    def size(tree_id: bytes, depth: int) -> int:
        if tree_id in sizes:
            return sizes[tree_id]
        if depth > MAX_DEPTH:
            raise FormatError("snapshot trees nest implausibly deep (hostile or damaged)")
        total = 0
        for node in load_tree(repo, tree_id):
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
