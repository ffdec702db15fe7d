"""Searching snapshots' trees for a pattern, each shared tree searched once.

Nightly snapshots share almost all their folders: a folder nobody touched has the same tree id
every night. The matches inside a tree depend only on (tree id, pattern state)
(`dedupe.find.pattern`), so a `Finder` keeps, per pair, the matching entries and the subfolders
with matches below: a pair already searched, in this snapshot or any earlier one, is answered
without reading the tree again. A year of snapshots then costs the trees that changed, plus
writing out the matches.

Hostile repositories get what `ls` gives them (`dedupe.repo.treewalk`): a folder nested past
MAX_DEPTH is TreesTooDeep, a snapshot that expands to more than MAX_ENTRIES entries (trees
naming each other exponentially) or matches is a FormatError, both before anything of it is
reported, and the search is iterative, so no chain of trees exhausts the stack. The
memoisation keeps a hostile DAG to one visit per tree, and a memoised subtree's height is
checked against the depth it is reused at, so sharing never lets a deep tree past the limit.
A snapshot whose trees are damaged or hostile is reported in `FindResult.damaged` and the
others are still searched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

from dedupe.errors import DamageError, FormatError, TreesTooDeep
from dedupe.find.pattern import Pattern, State
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, Node
from dedupe.repo import treewalk
from dedupe.repo.repository import Repository

Key = tuple[bytes, State]
"""(tree id, pattern state): what a tree's matches depend on."""


@dataclass(frozen=True)
class Match:
    """One version of a matching file (or folder, or link) in one snapshot."""

    snapshot: Snapshot
    path: bytes
    node: Node


@dataclass(frozen=True, slots=True)
class _Found:
    """What a (tree, state) holds: its matching entries, its subfolders with matches below
    (each with its key), how many matches and entries it expands to, and its height (how many
    folder levels were searched below it)."""

    direct: tuple[Node, ...]
    below: tuple[tuple[Node, Key], ...]
    matches: int
    entries: int
    height: int


@dataclass
class _Frame:
    key: Key
    depth: int
    nodes: Sequence[Node]
    position: int = 0
    direct: list[Node] = field(default_factory=list)
    below: list[tuple[Node, Key]] = field(default_factory=list)
    matches: int = 0
    entries: int = 0
    height: int = 0
    waiting: tuple[Node, Key] | None = None


@dataclass
class FindResult:
    """Every match (by snapshot, oldest first, then path), the snapshots searched, those that
    could not be searched (snapshot, why), and how many trees were read."""

    matches: list[Match]
    searched: list[Snapshot]
    damaged: list[tuple[Snapshot, str]]
    trees_read: int


class Finder:
    """Searches trees for one pattern, remembering every (tree, state) it has searched.

    `load` reads a tree, verified and decoded (`partial(treewalk.read_tree, repo)`; a test or
    a benchmark can wrap it to count). `limit` bounds one snapshot's expanded entries and
    matches (default `treewalk.MAX_ENTRIES`, as `ls` refuses)."""

    def __init__(
        self, pattern: Pattern, load: treewalk.TreeLoader, limit: int = treewalk.MAX_ENTRIES
    ) -> None:
        self.pattern = pattern
        self._load = load
        self.limit = limit
        self.trees_read = 0
        self._memo: dict[Key, _Found] = {}
        self._failed: dict[bytes, DamageError] = {}
        self._states: dict[State, State] = {}  # one object per distinct state: small keys
        # (state, name) -> step's answer: most names recur in every version of their folder,
        # so a year of snapshots matches each name about once. Bounded by the entries read.
        self._steps: dict[tuple[State, bytes], tuple[bool, State]] = {}

    def matches(self, root: bytes) -> Iterator[tuple[bytes, Node]]:
        """(absolute path, node) of every match below the root tree. The whole snapshot is
        searched (and refused if hostile) before the first match is yielded."""
        found = self._search((root, self.pattern.start()))
        stack: list[tuple[bytes, _Found]] = [(b"", found)]
        while stack:
            prefix, here = stack.pop()
            for node in here.direct:
                yield prefix + b"/" + node.name, node
            for node, key in reversed(here.below):
                stack.append((prefix + b"/" + node.name, self._memo[key]))

    def _read(self, tree_id: bytes) -> Sequence[Node]:
        failed = self._failed.get(tree_id)
        if failed is not None:
            raise failed
        self.trees_read += 1
        try:
            return self._load(tree_id)
        except DamageError as exc:
            self._failed[tree_id] = exc
            raise

    def _search(self, root_key: Key) -> _Found:
        """The memo entry for `root_key`, searching (iteratively) what is not memoised yet."""
        known = self._memo.get(root_key)
        if known is not None:
            return known
        in_progress = {root_key}
        stack = [_Frame(root_key, 0, self._read(root_key[0]))]
        while stack:
            frame = stack[-1]
            if frame.waiting is not None:
                node, key = frame.waiting
                frame.waiting = None
                self._absorb(frame, node, key)
            child = self._scan(frame)
            if child is not None:
                node, key = child
                if key in in_progress:  # a folder that contains itself
                    raise TreesTooDeep()
                if frame.depth + 1 > treewalk.MAX_DEPTH:
                    raise TreesTooDeep()
                frame.waiting = child
                in_progress.add(key)
                stack.append(_Frame(key, frame.depth + 1, self._read(key[0])))
                continue
            stack.pop()
            in_progress.discard(frame.key)
            self._memo[frame.key] = _Found(
                tuple(frame.direct), tuple(frame.below), frame.matches, frame.entries, frame.height
            )
        return self._memo[root_key]

    def _scan(self, frame: _Frame) -> tuple[Node, Key] | None:
        """Go on through the frame's entries: record matches, absorb memoised subfolders, and
        return the first subfolder that must be searched (None when the tree is done)."""
        steps = self._steps
        state = frame.key[1]
        while frame.position < len(frame.nodes):
            node = frame.nodes[frame.position]
            frame.position += 1
            frame.entries += 1
            answer = steps.get((state, node.name))
            if answer is None:
                answer = steps[state, node.name] = self._step(state, node.name)
            matched, inside = answer
            if matched:
                frame.direct.append(node)
                frame.matches += 1
            if frame.entries > self.limit or frame.matches > self.limit:
                self._too_many()
            if node.type != DIR or node.subtree is None or not inside:
                continue
            key = (node.subtree, inside)
            known = self._memo.get(key)
            if known is None:
                return node, key
            if frame.depth + 1 + known.height > treewalk.MAX_DEPTH:
                raise TreesTooDeep()
            self._absorb(frame, node, key)
        return None

    def _step(self, state: State, name: bytes) -> tuple[bool, State]:
        matched, inside = self.pattern.step(state, name)
        return matched, self._states.setdefault(inside, inside)

    def _absorb(self, frame: _Frame, node: Node, key: Key) -> None:
        """Add a searched subfolder's counts to its parent's."""
        found = self._memo[key]
        frame.entries += found.entries
        frame.height = max(frame.height, found.height + 1)
        if found.matches:
            frame.below.append((node, key))
            frame.matches += found.matches
        if frame.entries > self.limit or frame.matches > self.limit:
            self._too_many()

    def _too_many(self) -> None:
        raise FormatError(
            f"the snapshot expands to more than {self.limit} entries (hostile or damaged)"
        )


def find(
    repo: Repository,
    snapshots: Iterable[Snapshot],
    pattern: Pattern,
    load: treewalk.TreeLoader | None = None,
    progress: Callable[[int], None] | None = None,
) -> FindResult:
    """Every match of `pattern` in each snapshot (given oldest first), with trees shared
    between snapshots read once (`load`: as for Finder; default `treewalk.read_tree`). A
    snapshot that cannot be searched (damaged, hostile) is listed in `damaged` and the rest
    are still searched. `progress(1)` after each snapshot."""
    # Each tree is read once anyway (the memo), so the repository's tree cache would only
    # hold on to trees nothing reads again.
    finder = Finder(pattern, load if load is not None else partial(treewalk.read_tree, repo))
    matches: list[Match] = []
    searched: list[Snapshot] = []
    damaged: list[tuple[Snapshot, str]] = []
    for snap in snapshots:
        try:
            found = sorted(finder.matches(snap.tree), key=lambda item: item[0])
        except DamageError as exc:
            damaged.append((snap, str(exc)))
        else:
            searched.append(snap)
            matches.extend(Match(snap, path, node) for path, node in found)
        if progress is not None:
            progress(1)
    return FindResult(matches, searched, damaged, finder.trees_read)
