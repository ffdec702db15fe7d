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
from collections.abc import Iterable
from concurrent.futures import Future
from typing import BinaryIO

from dedupe.backup.filescache import FilesCache
from dedupe.backup.filestore import (
    ArchiveStats,
    FileStore,
    PendingFile,
    Progress,
    ProgressTotal,
    Warn,
)
from dedupe.backup.largefiles import LargeFiles, StoredFile
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
        self._pending = 0  # files whose blocks workers still store (PendingFile in a list)

    # --- public ----------------------------------------------------------------------------

    def archive_paths(self, paths: Iterable[bytes]) -> bytes:
        """Store the given absolute paths; return the root tree id."""
        try:
            return self._archive_paths(paths)
        finally:
            self.close()  # whatever happened, no read-ahead outlives the walk

    def _archive_paths(self, paths: Iterable[bytes]) -> bytes:
        roots = normalise_sources(paths)
        if roots == [b"/"]:
            root = self._store_dir(b"/")
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
        nodes: list[Node | PendingFile] = []
        for name, sub in sorted(layout.items()):
            child = path.rstrip(b"/") + b"/" + name
            node: Node | PendingFile | None
            if sub is None:  # a source named on the command line
                problem = source_problem(child)
                if problem is not None:
                    self._problem(f"{os.fsdecode(child)}: {problem}")
                    continue
                node = self._node_for(child, name)
            else:
                try:
                    st = os.lstat(child)
                except OSError as exc:
                    self._error(child, exc)
                    continue
                node = self._dir_node(name, st, self._store_virtual(child, sub))
            if node is not None:
                nodes.append(node)
        self.stats.dirs += 1
        return self.writer.add(encode_tree(self._resolve(nodes)))

    def _node_for(
        self, path: bytes, name: bytes, st: os.stat_result | None = None
    ) -> Node | PendingFile | None:
        try:
            if st is None:
                st = os.lstat(path)
        except OSError as exc:
            self._error(path, exc)
            return None
        mode = st.st_mode
        if stat.S_ISREG(mode):
            node = self.files.store(path, name, st, self.stats)
            if type(node) is PendingFile:
                self._pending += 1
            return node
        if stat.S_ISDIR(mode):
            subtree = self._store_dir(path)
            return None if subtree is None else self._dir_node(name, st, subtree)
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                self._error(path, exc)
                return None
            return self._owners.node(name, SYMLINK, st, target=target)
        self.warn(f"skipping {os.fsdecode(path)}: not a regular file, folder or symlink")
        return None

    def _dir_node(self, name: bytes, st: os.stat_result, subtree: bytes) -> Node:
        return self._owners.node(name, DIR, st, subtree=subtree)

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

    def _store_dir(self, path: bytes) -> bytes | None:
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
        if cache is not None:
            key = cache.key(path)
            digest = folder_digest(children, subtrees)
            tree_id = self._unchanged_dir(cache, key, digest, children, ahead)
            if tree_id is not None:
                return tree_id
        nodes: list[Node | PendingFile] = []
        own_files = own_bytes = 0
        for name, child, st in children:
            node: Node | PendingFile | None
            if stat.S_ISDIR(st.st_mode):
                subtree = subtrees[name]
                node = None if subtree is None else self._dir_node(name, st, subtree)
            elif name in ahead:
                node = self._join_ahead(ahead.pop(name))
            else:
                node = self._node_for(child, name, st)
            if node is not None:
                nodes.append(node)
                if node.type == FILE:  # a PendingFile's type is FILE too
                    own_files += 1
                    own_bytes += node.size
        tree_id = self.writer.add(encode_tree(self._resolve(nodes)))
        if cache is not None and self.stats.unstable == unstable_before:
            cache.remember_dir(key, digest, tree_id, own_files, own_bytes)
        return tree_id

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

    def _join_ahead(self, future: Future[StoredFile]) -> Node | None:
        node, stats = future.result()
        self.stats.merge(stats)
        return node

    def _resolve(self, nodes: list[Node | PendingFile]) -> list[Node]:
        """The nodes, with the content of files whose blocks were stored asynchronously."""
        if not self._pending:
            return nodes  # type: ignore[return-value]
        out = []
        for node in nodes:
            if type(node) is PendingFile:
                self._pending -= 1
                node = node.result()
            out.append(node)
        return out  # type: ignore[return-value]

    def _error(self, path: bytes, exc: OSError) -> None:
        self._problem(f"cannot read {os.fsdecode(path)}: {exc.strerror or exc}")

    def _problem(self, message: str) -> None:
        """A file or source left out of the snapshot: listed, and the snapshot exits 3."""
        self.stats.unstable += 1
        self.stats.errors.append(message)
        self.warn(message)
