"""Snapshot creation: walk the sources, store file contents and trees, return the root tree.

Paths are handled as bytes throughout, so names that are not UTF-8 round-trip exactly. The root
tree stands for `/`; each source path is reached through its real parent folders. Unreadable or
vanishing files are reported through `warn` and left out (the caller exits 3); everything else is
saved. A file that changes while it is read is saved as read, with a warning, and not cached.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from dedupe.backup.filescache import FilesCache
from dedupe.backup.largefiles import LargeFiles
from dedupe.backup.walkparts import (
    Excluder,
    folder_digest,
    group_name,
    normalise_sources,
    open_listed,
    owner_name,
    source_problem,
)
from dedupe.chunker import Chunker
from dedupe.model.tree import DIR, FILE, SYMLINK, Node, encode_tree
from dedupe.repo.writer import BlobWriter

if TYPE_CHECKING:
    from dedupe.backup.offload import Offloader

# Files at least this big are hashed block by block in the workers (see _store_content).
ASYNC_MIN = 1 << 20

Progress = Callable[[int, int], None]  # (bytes read so far, files so far)
Warn = Callable[[str], None]


@dataclass
class ArchiveStats:
    files: int = 0
    dirs: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    files_unchanged: int = 0
    errors: list[str] = field(default_factory=list)


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
        self.offload = offload  # large files go to a helper process (dedupe.backup.offload)
        self.chunker = chunker
        self.cache = files_cache
        self.excluder = Excluder(excludes)
        self.warn = warn
        self.progress = progress
        self.stats = ArchiveStats()
        self._deferred: dict[int, tuple[list, tuple[bytes, os.stat_result] | None]] = {}
        self._unstable = 0  # errors and files that changed while read: never cache their folder
        self._users: dict[int, str | None] = {}
        self._groups: dict[int, str | None] = {}
        self._large = LargeFiles(self)
        # Progress is reported by the walking thread and the read-ahead thread alike: one
        # running total under a lock, kept by the Archiver that owns the progress callback.
        self._progress_owner = self
        self._progress_lock = threading.Lock()
        self._progress_bytes = 0
        self._progress_files = 0
        self._unreported = 0

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
        layout: dict = {}
        for path in roots:  # no root lies under another, so no None is ever descended into
            parts = [p for p in path.split(b"/") if p]
            node = layout
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = None  # None: archive the real thing here
        return self._store_virtual(b"/", layout)

    def archive_stream(self, name: bytes, stream: BinaryIO, mtime_ns: int) -> bytes:
        """Store a stream (stdin) as the file `/name`; return the root tree id."""
        content, size = self._store_content(stream.readinto, None)  # type: ignore[arg-type]
        self.stats.files += 1
        self.stats.bytes_total += size
        node = Node(
            name=name,
            type=FILE,
            mode=0o600,
            mtime_ns=mtime_ns,
            uid=os.getuid(),
            gid=os.getgid(),
            size=size,
        )
        node = self._with_content(node, content, None)
        return self.writer.add(encode_tree(self._resolve([node])))

    # --- walking ---------------------------------------------------------------------------

    def _store_virtual(self, path: bytes, layout: dict) -> bytes:
        """A folder on the way to the sources: only the listed children, with real metadata."""
        nodes = []
        for name, sub in sorted(layout.items()):
            child = path.rstrip(b"/") + b"/" + name
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

    def _node_for(self, path: bytes, name: bytes, st: os.stat_result | None = None) -> Node | None:
        try:
            if st is None:
                st = os.lstat(path)
        except OSError as exc:
            self._error(path, exc)
            return None
        mode = st.st_mode
        if stat.S_ISREG(mode):
            return self._file_node(path, name, st)
        if stat.S_ISDIR(mode):
            subtree = self._store_dir(path)
            return None if subtree is None else self._dir_node(name, st, subtree)
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                self._error(path, exc)
                return None
            return self._node(name, SYMLINK, st, target=target)
        self.warn(f"skipping {os.fsdecode(path)}: not a regular file, folder or symlink")
        return None

    def _dir_node(self, name: bytes, st: os.stat_result, subtree: bytes) -> Node:
        return self._node(name, DIR, st, subtree=subtree)

    def _node(self, name: bytes, kind: str, st: os.stat_result, **fields: object) -> Node:
        """A node with the metadata every kind shares, taken from `st`."""
        uid, gid = st.st_uid, st.st_gid
        users, groups = self._users, self._groups
        return Node(
            name,
            kind,
            st.st_mode & 0o7777,
            st.st_mtime_ns,
            uid,
            gid,
            users[uid] if uid in users else owner_name(uid, users),
            groups[gid] if gid in groups else group_name(gid, groups),
            **fields,  # type: ignore[arg-type]
        )

    def _store_dir(self, path: bytes) -> bytes | None:
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
        unstable_before = self._unstable
        # Large files start at once on the read-ahead thread: the walk below goes on meanwhile,
        # so a database dump's compression overlaps the (GIL-bound) walk of small files.
        ahead = self._read_ahead(children)
        # Subfolders first: their tree ids are part of this folder's digest.
        subtrees = {
            name: self._store_dir(child) for name, child, st in children if stat.S_ISDIR(st.st_mode)
        }
        self.stats.dirs += 1
        cache = self.cache
        if cache is not None:
            key = cache.key(path)
            digest = folder_digest(children, subtrees)
            hit = cache.lookup_dir(key, digest)
            if hit is not None and self.writer.has(hit[0]):
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
        nodes = []
        own_files = own_bytes = 0
        for name, child, st in children:
            if stat.S_ISDIR(st.st_mode):
                subtree = subtrees[name]
                node = None if subtree is None else self._dir_node(name, st, subtree)
            elif name in ahead:
                node = self._join_ahead(ahead.pop(name))
            else:
                node = self._node_for(child, name, st)
            if node is not None:
                nodes.append(node)
                if node.type == FILE:
                    own_files += 1
                    own_bytes += node.size
        tree_id = self.writer.add(encode_tree(self._resolve(nodes)))
        if cache is not None and self._unstable == unstable_before:
            cache.remember_dir(key, digest, tree_id, own_files, own_bytes)
        return tree_id

    # --- read-ahead of large files ---------------------------------------------------------

    def _read_ahead(self, children: list[tuple[bytes, bytes, os.stat_result]]) -> dict:
        """Start the folder's large files ahead of the walk: name -> Future (LargeFiles)."""
        return self._large.start(children)

    def _join_ahead(self, future: Future) -> Node | None:
        node, stats, unstable = future.result()
        self.stats.files += stats.files
        self.stats.bytes_read += stats.bytes_read
        self.stats.bytes_total += stats.bytes_total
        self.stats.files_unchanged += stats.files_unchanged
        self.stats.errors.extend(stats.errors)
        self._unstable += unstable
        return node

    def close(self) -> None:
        """Stop the large-file threads (every started file has been joined by then)."""
        self._large.close()

    # --- files -----------------------------------------------------------------------------

    def _cached(self, key: bytes, st: os.stat_result) -> list[bytes] | None:
        """The file's content ids if the files cache holds them and they are stored."""
        assert self.cache is not None
        cached = self.cache.lookup(key, st)
        if cached is not None and (self.cache.trusted or all(map(self.writer.has, cached))):
            return cached
        return None

    def _cache_hit(self, path: bytes, st: os.stat_result) -> bool:
        """Whether the files cache holds this file's content (so it need not be read)."""
        return self.cache is not None and self._cached(self.cache.key(path), st) is not None

    def _file_node(self, path: bytes, name: bytes, st: os.stat_result) -> Node | None:
        content = None
        key = None
        remember = None
        if self.cache is not None:
            key = self.cache.key(path)
            cached = self._cached(key, st)
            if cached is not None:
                content = cached
                size = st.st_size
                self.stats.files_unchanged += 1
                self.cache.remember(key, st, cached)
        if content is None:
            try:  # the one open of every lane (walk, read-ahead, helper): never blocks
                fd = open_listed(path, st)
            except OSError as exc:
                self._error(path, exc)
                return None
            try:
                try:
                    small = self._read_small(fd, st.st_size)
                    if small is not None:
                        content, size = self._store_small(small)
                    else:
                        readinto = open(fd, "rb", buffering=0, closefd=False).readinto
                        content, size = self._store_content(readinto, st.st_size)
                    after = os.fstat(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._error(path, exc)
                return None
            changed = (after.st_mtime_ns, after.st_size) != (st.st_mtime_ns, st.st_size) or (
                size != st.st_size
            )
            if changed:
                self.warn(f"{os.fsdecode(path)} changed while it was read; saved as read")
                self._unstable += 1
                st = after
            remember = None if changed or self.cache is None or key is None else (key, st)
        self.stats.files += 1
        self.stats.bytes_total += size
        self._report(self._unreported, 1)
        self._unreported = 0
        if content and isinstance(content[0], Future):
            return self._with_content(self._node(name, FILE, st, size=size), content, remember)
        if remember is not None and self.cache is not None:
            self.cache.remember(remember[0], remember[1], content)
        return self._node(name, FILE, st, size=size, content=tuple(content))

    def _with_content(
        self, node: Node, content: list, remember: tuple[bytes, os.stat_result] | None
    ) -> Node:
        """The node with its content ids, or registered to get them once its blocks are
        stored (`_resolve`), so reading goes on while workers hash the blocks."""
        if content and isinstance(content[0], Future):
            self._deferred[id(node)] = (content, remember)
            return node
        if remember is not None and self.cache is not None:
            self.cache.remember(remember[0], remember[1], content)
        return dataclasses.replace(node, content=tuple(content))

    def _resolve(self, nodes: list[Node]) -> list[Node]:
        """Fill in the content of nodes whose blocks were stored asynchronously."""
        if not self._deferred:
            return nodes
        out = []
        for node in nodes:
            pending = self._deferred.pop(id(node), None)
            if pending is not None:
                futures, remember = pending
                ids = [blob_id for future in futures for blob_id in future.result()]
                node = self._with_content(node, ids, remember)
            out.append(node)
        return out

    @staticmethod
    def _read_small(fd: int, size: int) -> bytes | None:
        """A small file's whole content in one read, or None (large, or it grew while read:
        the caller then streams it from where it stands now, the start).

        Most files of a server are small; one `os.read` into a bytes object spares them the
        block buffers and generators that large files need (per-file Python is what bounds
        a walk of many small files).
        """
        if size >= ASYNC_MIN:
            return None
        parts = []
        got = 0
        while got <= size:
            part = os.read(fd, size + 1 - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        if got > size:
            os.lseek(fd, 0, os.SEEK_SET)  # it grew: stream it like a large file
            return None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _store_small(self, data: bytes) -> tuple[list[bytes], int]:
        add = self.writer.add
        ids = [add(chunk) for chunk in self.chunker.cut(data)] if data else []
        size = len(data)
        self.stats.bytes_read += size
        self._unreported += size  # reported with the file, in one call
        return ids, size

    def _store_content(
        self, readinto: Callable[[memoryview], int], size_hint: int | None
    ) -> tuple[list[bytes], int]:
        size = 0
        if size_hint is not None and size_hint < ASYNC_MIN:
            ids = []
            add = self.writer.add
            for chunk in self.chunker.chunks(readinto, size_hint):
                ids.append(add(chunk))
                size += len(chunk)
            self.stats.bytes_read += size
            self._unreported += size  # reported with the file, in one call
            return ids, size
        # Large files and streams: this thread reads and cuts, workers hash and store.
        futures: list = []
        for block in self.chunker.blocks(readinto, size_hint):
            futures.append(self.writer.add_chunks_async(block))
            read = sum(len(c) for c in block)
            size += read
            self.stats.bytes_read += read
            self._report(read, 0)
        return futures, size

    def _report(self, read: int, files: int) -> None:
        owner = self._progress_owner
        if owner.progress is not None:
            with owner._progress_lock:
                owner._progress_bytes += read
                owner._progress_files += files
                owner.progress(owner._progress_bytes, owner._progress_files)

    def _error(self, path: bytes, exc: OSError) -> None:
        self._problem(f"cannot read {os.fsdecode(path)}: {exc.strerror or exc}")

    def _problem(self, message: str) -> None:
        """A file or source left out of the snapshot: listed, and the snapshot exits 3."""
        self._unstable += 1
        self.stats.errors.append(message)
        self.warn(message)
