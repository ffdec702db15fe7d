"""Snapshot creation: walk the sources, store every folder's tree, return the root tree id.

Paths are handled as bytes throughout, so names that are not UTF-8 round-trip exactly. The root
tree stands for `/`; each source path is reached through its real parent folders. Unreadable or
vanishing files are reported through `warn` and left out (the caller exits 3); everything else is
saved. A file that changes while it is read is saved as read, with a warning, and not cached.

The walk owns the folders: listing, exclusion, the files cache's folder entries and the trees.
Each file is handed to a FileStore (dedupe.backup.filestore), directly or through a lane for
large files (dedupe.backup.largefiles); no lane ever sees the walk.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from typing import BinaryIO, Union

from dedupe.backup.filescache import FilesCache
from dedupe.backup.filestore import (
    ArchiveStats,
    FileStore,
    PendingFile,
    Progress,
    ProgressTotal,
    Warn,
)
from dedupe.backup.largefiles import OFFLOAD_MIN, LargeFiles, StoredFile
from dedupe.backup.memory import fewer_collections
from dedupe.backup.offload import Offloader
from dedupe.backup.walkparts import (
    Excluder,
    Owners,
    folder_digest,
    normalise_sources,
    source_problem,
)
from dedupe.chunker import Chunker
from dedupe.model.tree import DIR, FILE, SYMLINK, Node, encode_tree
from dedupe.repo.writer import BlobWriter

# A folder of the way to the sources: its name -> a deeper folder, or None for a source itself.
Layout = dict[bytes, "Layout | None"]
Listed = tuple[bytes, bytes, os.stat_result]  # (name, path, lstat) of a folder's entry

# At most this many folders wait for their files (stored by the helper process or the writer's
# workers) before the walk waits for the oldest: it bounds the memory of the walk's lead.
MAX_WAITING_FOLDERS = 4096


class _Folder:
    """A walked folder whose tree is written when its files are stored (`Archiver._finish`).
    Folders finish in the order the walk completed them, so a subfolder always before its
    folder; `tree_id` is set then."""

    __slots__ = ("key", "children", "subtrees", "items", "unstable", "tree_id", "digest")

    def __init__(
        self,
        key: bytes | None,
        children: list[Listed],
        subtrees: dict[bytes, bytes | _Folder | None],
        items: list[Item],
        unstable: bool,
        digest: bytes | None = None,
    ) -> None:
        self.key = key  # its files cache key (None: no files cache)
        self.children = children
        self.subtrees = subtrees
        self.items = items
        self.unstable = unstable  # a file under it was left out or changed while read
        self.tree_id: bytes | None = None
        # its folder_digest when the walk could compute it (no subfolder was waiting then)
        self.digest = digest

    def ready(self) -> bool:
        """Whether every file of the folder is stored (so finishing it will not wait)."""
        for item in self.items:
            kind = type(item)
            if kind is PendingFile:
                if not item.done():  # type: ignore[union-attr]
                    return False
            elif kind is Future and not item.done():  # type: ignore[union-attr]
                return False
        return True


class _SubDir:
    """A subfolder entry of a folder: its name, lstat and tree (id, or a folder to finish)."""

    __slots__ = ("name", "st", "tree")

    def __init__(self, name: bytes, st: os.stat_result, tree: bytes | _Folder) -> None:
        self.name = name
        self.st = st
        self.tree = tree


# One entry of a folder as the walk leaves it: finished, or waiting for another lane.
Item = Union[Node, PendingFile, _SubDir, "Future[StoredFile]"]


class Archiver:
    """Stores one snapshot's data through a BlobWriter."""

    def __init__(
        self,
        writer: BlobWriter,
        chunker: Chunker,
        files_cache: FilesCache | None = None,
        excludes: Iterable[str] = (),
        warn: Warn = lambda msg: None,
        progress: Progress | None = None,
        offload: Offloader | None = None,
    ) -> None:
        self.writer = writer
        self.cache = files_cache
        self.excluder = Excluder(excludes)
        self.warn = warn
        self.stats = ArchiveStats()
        self._owners = Owners()
        # Progress is reported by the walking thread and the lanes alike: one running total.
        self.files = FileStore(
            writer, chunker, files_cache, warn, ProgressTotal(progress).add, self._owners
        )
        # Large files go to a helper process (dedupe.backup.offload) or a read-ahead thread.
        self.large_files = LargeFiles(self.files, offload)
        self._queue: deque[_Folder] = deque()  # walked folders waiting for their files

    # --- public ----------------------------------------------------------------------------

    def archive_paths(self, paths: Iterable[bytes]) -> bytes:
        """Store the given absolute paths; return the root tree id."""
        try:
            with fewer_collections():
                return self._archive_paths(paths)
        finally:
            self.close()  # whatever happened, no read-ahead outlives the walk

    def _archive_paths(self, paths: Iterable[bytes]) -> bytes:
        roots = normalise_sources(paths)
        if roots == [b"/"]:
            walked = self._store_dir(b"/")
            self._drain()
            root = walked.tree_id if isinstance(walked, _Folder) else walked
            return root if root is not None else self.writer.add(encode_tree([]))
        layout: Layout = {}
        for path in roots:  # no root lies under another, so no None is ever descended into
            parts = [p for p in path.split(b"/") if p]
            node = layout
            for part in parts[:-1]:
                node = node.setdefault(part, {})  # type: ignore[assignment]
            node[parts[-1]] = None  # None: archive the real thing here
        return self._store_virtual(b"/", layout)

    def archive_stream(self, name: bytes, stream: BinaryIO, mtime_ns: int) -> bytes:
        """Store a stream (stdin) as the file `/name`; return the root tree id."""
        node = self.files.store_stream(name, stream, mtime_ns, self.stats)
        return self.writer.add(encode_tree([node]))

    def close(self) -> None:
        """Stop the large-file threads (every started file has been joined by then)."""
        self.large_files.close()

    # --- walking ---------------------------------------------------------------------------

    def _store_virtual(self, path: bytes, layout: Layout) -> bytes:
        """A folder on the way to the sources: only the listed children, with real metadata."""
        items: list[Item] = []
        for name, sub in sorted(layout.items()):
            child = path.rstrip(b"/") + b"/" + name
            item: Item | None
            if sub is None:  # a source named on the command line
                problem = source_problem(child)
                if problem is not None:
                    self._problem(f"{os.fsdecode(child)}: {problem}")
                    continue
                item = self._node_for(child, name)
            else:
                try:
                    st = os.lstat(child)
                except OSError as exc:
                    self._error(child, exc)
                    continue
                item = _SubDir(name, st, self._store_virtual(child, sub))
            if item is not None:
                items.append(item)
        self.stats.dirs += 1
        self._drain()
        return self.writer.add(encode_tree(self._resolve(items)[0]))

    def _node_for(self, path: bytes, name: bytes, st: os.stat_result | None = None) -> Item | None:
        try:
            if st is None:
                st = os.lstat(path)
        except OSError as exc:
            self._error(path, exc)
            return None
        mode = st.st_mode
        if stat.S_ISREG(mode):
            return self.files.store(path, name, st, self.stats)
        if stat.S_ISDIR(mode):
            subtree = self._store_dir(path)
            return None if subtree is None else _SubDir(name, st, subtree)
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                self._error(path, exc)
                return None
            return self._owners.node(name, SYMLINK, st, target=target)
        self.warn(f"skipping {os.fsdecode(path)}: not a regular file, folder or symlink")
        return None

    def _file_item(self, path: bytes, name: bytes, st: os.stat_result) -> Item | None:
        """A regular file of a folder: stored here, or (small, not in the files cache) handed
        to the helper process in a batch while the walk goes on."""
        if st.st_size < OFFLOAD_MIN and self.large_files.batching:
            node = self.files.cached_node(path, name, st, self.stats)
            if node is not None:
                return node
            future = self.large_files.submit_small(path, name, st)
            if future is not None:
                return future
        return self._node_for(path, name, st)

    def _list_dir(self, path: bytes) -> list[Listed] | None:
        """The folder's entries that are not excluded, sorted by name; None if unreadable."""
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self._error(path, exc)
            return None
        children = []
        excluded = self.excluder.excluded if self.excluder.active else None
        for entry in entries:
            if excluded is not None and excluded(entry.path, entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                self._error(entry.path, exc)
                continue
            children.append((entry.name, entry.path, st))
        return children

    def _store_dir(self, path: bytes) -> bytes | _Folder | None:
        """The folder's tree id, or a _Folder whose tree is written once its files are stored
        (the walk goes on meanwhile); None if the folder cannot be read."""
        children = self._list_dir(path)
        if children is None:
            return None
        unstable_before = self.stats.unstable
        # Large files start at once on their lanes: the walk below goes on meanwhile, so a
        # database dump's compression overlaps the (GIL-bound) walk of small files.
        ahead = self.large_files.start(children)
        # Subfolders first: their tree ids are part of this folder's digest.
        subtrees = {
            name: self._store_dir(child) for name, child, st in children if stat.S_ISDIR(st.st_mode)
        }
        self.stats.dirs += 1
        cache = self.cache
        key = digest = None
        if cache is not None:
            key = cache.key(path)
            # A subfolder still waiting for its files changed: this folder's digest cannot
            # match, so the lookup waits until the folder's tree is written.
            if not any(type(sub) is _Folder for sub in subtrees.values()):
                known: dict[bytes, bytes | None] = subtrees  # type: ignore[assignment]
                digest = folder_digest(children, known)
                tree_id = self._unchanged_dir(cache, key, digest, children, ahead)
                if tree_id is not None:
                    return tree_id
        items: list[Item] = []
        for name, child, st in children:
            item: Item | None
            if stat.S_ISDIR(st.st_mode):
                subtree = subtrees[name]
                item = None if subtree is None else _SubDir(name, st, subtree)
            elif name in ahead:
                item = ahead.pop(name)
            elif stat.S_ISREG(st.st_mode):
                item = self._file_item(child, name, st)
            else:
                item = self._node_for(child, name, st)
            if item is not None:
                items.append(item)
        unstable = self.stats.unstable != unstable_before
        folder = _Folder(key, children, subtrees, items, unstable, digest)
        self._queue.append(folder)
        self._settle()
        return folder

    def _settle(self) -> None:
        """Write the trees of the waiting folders whose files are stored, oldest first (a
        folder waits behind its subfolders, which came before it); when too many wait, wait
        for the oldest."""
        queue = self._queue
        while queue and (len(queue) > MAX_WAITING_FOLDERS or queue[0].ready()):
            self._finish(queue.popleft())

    def _drain(self) -> None:
        """Write every waiting folder's tree (before a tree that names them)."""
        self.large_files.flush()
        while self._queue:
            self._finish(self._queue.popleft())

    def _finish(self, folder: _Folder) -> None:
        """Encode and store a folder's tree, and tell the files cache about it."""
        self.large_files.flush()  # its files may still wait in an unsent batch
        nodes, unstable, own_files, own_bytes = self._resolve(folder.items)
        folder.items = []
        tree_id = self.writer.add(encode_tree(nodes))
        folder.tree_id = tree_id
        folder.unstable = folder.unstable or unstable
        cache = self.cache
        if cache is not None and folder.key is not None and not folder.unstable:
            digest = folder.digest
            if digest is None:
                subtrees = {
                    n: sub.tree_id if type(sub) is _Folder else sub
                    for n, sub in folder.subtrees.items()
                }
                digest = folder_digest(folder.children, subtrees)  # type: ignore[arg-type]
            cache.remember_dir(folder.key, digest, tree_id, own_files, own_bytes)
        folder.children, folder.subtrees = [], {}

    def _unchanged_dir(
        self,
        cache: FilesCache,
        key: bytes,
        digest: bytes,
        children: list[Listed],
        ahead: dict[bytes, Future[StoredFile]],
    ) -> bytes | None:
        """The folder's tree id if the files cache knows it unchanged (and its tree is stored):
        the folder's files count as unchanged, and their cache entries carry over."""
        hit = cache.lookup_dir(key, digest)
        if hit is None or not self.writer.has(hit[0]):
            return None
        for future in ahead.values():
            future.result()  # finished (or raising) before anything else goes on
        tree_id, files, size = hit
        self.stats.files += files
        self.stats.files_unchanged += files
        self.stats.bytes_total += size
        cache.keep_files_under(
            cache.key(child) for _, child, st in children if stat.S_ISREG(st.st_mode)
        )
        return tree_id

    def _resolve(self, items: list[Item]) -> tuple[list[Node], bool, int, int]:
        """The finished nodes of a folder's items (waiting for files stored elsewhere), whether
        any of them (or a subfolder) changed while read, and the folder's own files and bytes."""
        nodes: list[Node] = []
        unstable = False
        own_files = own_bytes = 0
        for item in items:
            node: Node | None
            if isinstance(item, Node):
                node = item
            elif isinstance(item, _SubDir):
                sub = item.tree
                if isinstance(sub, _Folder):
                    unstable = unstable or sub.unstable
                    assert sub.tree_id is not None, "a subfolder is written before its folder"
                    sub = sub.tree_id
                node = self._dir_node(item.name, item.st, sub)
            elif isinstance(item, PendingFile):
                node = item.result()
            else:  # a Future of another lane's (node, stats)
                node, stats = item.result()
                self.stats.merge(stats)
                unstable = unstable or stats.unstable > 0
            if node is None:
                continue
            nodes.append(node)
            if node.type == FILE:
                own_files += 1
                own_bytes += node.size
        return nodes, unstable, own_files, own_bytes

    def _dir_node(self, name: bytes, st: os.stat_result, subtree: bytes) -> Node:
        return self._owners.node(name, DIR, st, subtree=subtree)

    def _error(self, path: bytes, exc: OSError) -> None:
        self._problem(f"cannot read {os.fsdecode(path)}: {exc.strerror or exc}")

    def _problem(self, message: str) -> None:
        """A file or source left out of the snapshot: listed, and the snapshot exits 3."""
        self.stats.unstable += 1
        self.stats.errors.append(message)
        self.warn(message)
