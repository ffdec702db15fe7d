"""What a restore creates, in order: the snapshot's trees walked once, filtered by `--include`
and `--exclude`, as a lazy stream of steps (memory stays bounded however many files there are).

The restorer, the dry run and the progress total (`selected_bytes`) all read this one stream, so
what a dry run lists, what a restore writes and what its progress bar counts are the same files.
Before any step, `count_entries` refuses trees that name each other into an explosion.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import partial
from typing import NamedTuple

from dedupe.errors import DamageError, FormatError
from dedupe.model.tree import DIR, FILE, Node, valid_name
from dedupe.repo.repository import Repository
from dedupe.repo.treewalk import DAMAGED, ENTRY, TREE, count_entries, load_tree, traverse

Excluded = Callable[[bytes, bytes], bool]
"""(absolute path in the snapshot, base name) -> leave it out. A folder left out takes its whole
subtree with it. The command passes the snapshot's own `--exclude` matcher, so both commands
read a pattern the same way."""


class Step(NamedTuple):
    """One thing to create: `path` is the list of components below the target. `kind` is
    "dir" (entering a folder), "dir_done" (its contents are done), "file", "symlink", or
    "damaged" (a folder whose listing could not be read: `node` is None, `why` says why).
    (A tuple, not a dataclass: one is made per entry, and a restore of small files feels it.)"""

    kind: str
    path: tuple[bytes, ...]
    node: Node | None
    why: str = ""

    def display(self) -> str:
        """The path as the snapshot names it (`/srv/practice/x`)."""
        return "/" + os.fsdecode(b"/".join(self.path))


_new_step = tuple.__new__


def _selected(path: tuple[bytes, ...], includes: list[tuple[bytes, ...]]) -> tuple[bool, bool]:
    """(restore this entry, descend into it) for the include filters."""
    if not includes:
        return True, True
    for inc in includes:
        if path[: len(inc)] == inc:
            return True, True
        if inc[: len(path)] == path:
            return False, True
    return False, False


def plan(
    repo: Repository, root: bytes, includes: list[bytes], excluded: Excluded | None = None
) -> Iterator[Step]:
    """Walk the snapshot's trees (in order) and yield what to create, lazily."""
    inc_parts = [tuple(p for p in inc.split(b"/") if p) for inc in includes]
    # Refuses before any work if a few hostile trees name each other into an explosion:
    # counted over what the walk will enter (the included folders), not the whole snapshot,
    # so restoring one file of a large snapshot does not read every folder listing first.
    for top in _selected_roots(repo, root, inc_parts):
        count_entries(repo, top, skip_damaged=True)
    return _steps(repo, root, inc_parts, excluded)


def _selected_roots(
    repo: Repository, root: bytes, inc_parts: list[tuple[bytes, ...]]
) -> list[bytes]:
    """The trees below which the walk restores everything: the root without includes, else
    the tree of each included folder (an included file, or a path that is not there, has
    none). A listing that cannot be read on the way is left to the walk, which reports it."""
    if not inc_parts or any(not inc for inc in inc_parts):
        return [root]
    tops: list[bytes] = []
    for inc in inc_parts:
        tree_id: bytes | None = root
        for name in inc:
            try:
                nodes = load_tree(repo, tree_id)  # type: ignore[arg-type]
            except DamageError:
                tree_id = None
                break
            node = next((n for n in nodes if n.name == name), None)
            tree_id = node.subtree if node is not None and node.type == DIR else None
            if tree_id is None:
                break
        if tree_id is not None:
            tops.append(tree_id)
    return tops


def _absolute(path: tuple[bytes, ...]) -> bytes:
    return b"/" + b"/".join(path)


def _descend_filter(
    inc_parts: list[tuple[bytes, ...]], excluded: Excluded | None
) -> Callable[[tuple[bytes, ...], Node], bool] | None:
    if not inc_parts and excluded is None:
        return None

    def descend(path: tuple[bytes, ...], node: Node) -> bool:
        if inc_parts and not _selected(path, inc_parts)[1]:
            return False
        return excluded is None or not excluded(_absolute(path), node.name)

    return descend


def _steps(
    repo: Repository,
    root: bytes,
    inc_parts: list[tuple[bytes, ...]],
    excluded: Excluded | None,
) -> Iterator[Step]:
    visits = traverse(
        partial(load_tree, repo),
        [root],
        descend=_descend_filter(inc_parts, excluded),
        report_damage=True,  # only that folder's subtree is lost
    )
    for kind, path, node, _tree_id, _nodes, _depth, error, folder in visits:
        if kind == ENTRY:
            assert node is not None
            if not valid_name(node.name):  # decode_tree checks too; never trust one layer
                raise FormatError(f"invalid name {node.name!r} in snapshot")
            if node.type == DIR or (inc_parts and not _selected(path, inc_parts)[0]):
                continue
            if excluded is not None and excluded(_absolute(path), node.name):
                continue
            kind = "file" if node.type == FILE else "symlink"
            yield _new_step(Step, (kind, path, node, ""))
        elif kind == TREE or kind == DAMAGED:
            if folder is not None:  # entering a folder (selected, or on the way to one)
                yield Step("dir", path, folder)
            if kind == DAMAGED:
                yield Step("damaged", path, None, str(error))
        elif folder is not None:  # LEAVE
            yield Step("dir_done", path, folder)


def selected_bytes(
    repo: Repository, root: bytes, includes: list[bytes], excluded: Excluded | None = None
) -> int:
    """The total size of the files a restore with these filters writes (its progress bar's
    total): the same walk as the restore, over trees it then finds in the tree cache."""
    return sum(
        step.node.size
        for step in plan(repo, root, includes, excluded)
        if step.kind == "file" and step.node is not None
    )
