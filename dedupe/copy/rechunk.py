"""Translate snapshot trees into a repository with other keys: re-chunk, re-hash, rebuild.

Blob ids are keyed hashes, so a destination with its own id key names every chunk differently,
and its own chunker seed cuts files elsewhere. Each file is therefore streamed from the source
blob by blob into the destination's chunker and writer, and each tree is rebuilt with the new
content lists and subtree ids (the rest of every entry is kept as it is).

Work is remembered for the whole run: a source tree translated once (a folder unchanged between
snapshots) and a file content translated once (the same file in another folder or snapshot) are
not read again. `seed_from_copies` fills that memory from a snapshot an earlier run already
copied, by pairing its trees in both repositories, so the nightly copy of a mostly unchanged
snapshot reads only what changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import blake3

from dedupe.errors import DamageError, UsageError
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, FILE, Node, encode_tree
from dedupe.repo import manifests
from dedupe.repo.readahead import read_blobs
from dedupe.repo.repository import Repository
from dedupe.repo.treewalk import ENTRY, LEAVE, MAX_DEPTH, TREE, load_tree, traverse
from dedupe.repo.writer import BlobWriter


class _ContentStream:
    """A file's content as a `readinto` stream over its blobs, read ahead by a pool."""

    def __init__(self, blobs: Iterator[tuple[bytes, bytes]], on_bytes: Callable[[int], None]):
        self._blobs = blobs
        self._on_bytes = on_bytes
        self._current = memoryview(b"")
        self.total = 0

    def readinto(self, view: memoryview) -> int:
        filled = 0
        while filled < len(view):
            if not self._current:
                item = next(self._blobs, None)
                if item is None:
                    break
                self._current = memoryview(item[1])
                self.total += len(item[1])
                self._on_bytes(len(item[1]))
            n = min(len(view) - filled, len(self._current))
            view[filled : filled + n] = self._current[:n]
            self._current = self._current[n:]
            filled += n
        return filled


def _content_key(content: tuple[bytes, ...]) -> bytes:
    """A memory-only key for a file's source content list (ids are already keyed hashes)."""
    return blake3.blake3(b"".join(content)).digest()


class Rechunker:
    """Translates source trees into `dest` through a BlobWriter, remembering what it did."""

    def __init__(
        self,
        source: Repository,
        dest: Repository,
        pool: ThreadPoolExecutor,
        on_bytes: Callable[[int], None],
    ) -> None:
        self.source = source
        self.dest = dest
        self.pool = pool
        self.on_bytes = on_bytes
        self.chunker = dest.chunker()
        self.tree_map: dict[bytes, bytes] = {}  # source tree id -> destination tree id
        self.file_map: dict[bytes, tuple[bytes, ...]] = {}  # content key -> destination ids

    # --- translating -----------------------------------------------------------------------

    def copy_tree(self, writer: BlobWriter, tree_id: bytes) -> bytes:
        """The destination id of the translated tree (stored through `writer` if new).

        Files are translated in the order the source lists them, folders after everything
        below them; a folder translated before (in this run or paired) is not walked again."""
        if tree_id not in self.tree_map:
            built: list[list[Node]] = []  # translated entries of each open folder
            for visit in traverse(
                partial(load_tree, self.source),
                [tree_id],
                descend=lambda _path, node: node.subtree not in self.tree_map,
            ):
                if visit.kind == TREE:
                    built.append([])
                elif visit.kind == ENTRY:
                    node = visit.node
                    assert node is not None
                    if node.type == FILE:
                        node = dataclasses.replace(node, content=self._copy_content(writer, node))
                    built[-1].append(node)
                elif visit.kind == LEAVE:
                    nodes = [
                        dataclasses.replace(n, subtree=self.tree_map[n.subtree])
                        if n.type == DIR and n.subtree is not None
                        else n
                        for n in built.pop()
                    ]
                    self.tree_map[visit.tree_id] = writer.add(encode_tree(nodes))
        return self.tree_map[tree_id]

    def _copy_content(self, writer: BlobWriter, node: Node) -> tuple[bytes, ...]:
        if not node.content:
            return ()
        key = _content_key(node.content)
        known = self.file_map.get(key)
        if known is not None:
            return known
        stream = _ContentStream(read_blobs(self.source, node.content, self.pool), self.on_bytes)
        new_ids = tuple(
            writer.add(chunk) for chunk in self.chunker.chunks(stream.readinto, node.size)
        )
        if stream.total != node.size:
            raise DamageError(
                f"source repository: a file's content has {stream.total} bytes, its entry "
                f"records {node.size}"
            )
        self.file_map[key] = new_ids
        return new_ids

    # --- remembering earlier copies ----------------------------------------------------------

    def seed_from_copies(self, todo: list[Snapshot]) -> int:
        """Pair the trees of the newest already-copied snapshot of each group in `todo` (same
        host and paths) with their copies; returns how many source trees were paired.

        Only exact matches are trusted: a destination tree maps a source tree when every entry
        is equal except content and subtree ids, each subtree pairs too, and every id it names
        is in the destination's index. Anything else just leaves the memory empty there."""
        groups = {(s.host, s.paths) for s in todo}
        source_names = set(self.source.snapshot_names())
        newest: dict[tuple[str, tuple[bytes, ...]], Snapshot] = {}
        for name in self.dest.snapshot_names():
            if name not in source_names:
                continue
            try:
                snap = manifests.load(self.dest, name)
            except (DamageError, UsageError):
                continue  # the copy below simply does not profit from it
            group = (snap.host, snap.paths)
            if group in groups and (group not in newest or snap.time > newest[group].time):
                newest[group] = snap
        for copied in newest.values():
            try:
                original = manifests.load(self.source, copied.id)
                self._pair(original.tree, copied.tree)
            except (DamageError, UsageError):
                continue
        return len(self.tree_map)

    def _pair(self, source_tree: bytes, dest_tree: bytes) -> bool:
        """Record what matches below these two trees; True if the whole trees match.

        Two trees side by side, so not `traverse`, but iterative like it: one frame per pair
        of folders being compared; past MAX_DEPTH nothing more is paired."""
        stack: list[_PairFrame] = []
        answer = self._open_pair(source_tree, dest_tree, stack)
        while stack:
            frame = stack[-1]
            if answer is not None:  # the pair of subfolders just finished
                frame.whole = answer and frame.whole
                answer = None
            for a, b in frame.pairs:
                if dataclasses.replace(a, content=b.content, subtree=b.subtree) != b:
                    frame.whole = False
                    continue
                if a.type == FILE and a.content:
                    if all(blob_id in self.dest.index for blob_id in b.content):
                        self.file_map[_content_key(a.content)] = b.content
                    else:
                        frame.whole = False
                elif a.type == DIR and a.subtree is not None and b.subtree is not None:
                    answer = self._open_pair(a.subtree, b.subtree, stack)
                    if answer is None:
                        break  # compare the subfolders first
                    frame.whole = answer and frame.whole
                    answer = None
            else:
                stack.pop()
                if frame.whole:
                    self.tree_map[frame.source_tree] = frame.dest_tree
                answer = frame.whole
        assert answer is not None
        return answer

    def _open_pair(
        self, source_tree: bytes, dest_tree: bytes, stack: list[_PairFrame]
    ) -> bool | None:
        """The answer for two trees when it is known without reading them; else None, with a
        frame for them pushed on `stack` (its depth is the stack's length)."""
        if self.tree_map.get(source_tree) == dest_tree:
            return True
        if len(stack) > MAX_DEPTH or dest_tree not in self.dest.index:
            return False
        ours = load_tree(self.source, source_tree)
        theirs = load_tree(self.dest, dest_tree)
        pairs = zip(ours, theirs, strict=False)
        stack.append(_PairFrame(source_tree, dest_tree, pairs, len(ours) == len(theirs)))
        return None


@dataclasses.dataclass
class _PairFrame:
    """Two folders being compared by `Rechunker._pair`."""

    source_tree: bytes
    dest_tree: bytes
    pairs: Iterator[tuple[Node, Node]]
    whole: bool
