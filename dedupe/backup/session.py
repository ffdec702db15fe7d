"""One whole snapshot, from the lock to the manifest: what `dedupe snapshot` runs.

`snapshot_paths` and `snapshot_stream` take the repository's shared lock, warn when the disk may
be too small, store the data (dedupe.backup.archiver, with a helper process for large files and
batches of small ones on two cores or more, on a local, SFTP or S3 repository), and commit.
They report through callbacks only (`warn`, `progress`) and never print. A stream is cut with
the repository's stream chunker parameters, files with its file parameters (`chunker_for`,
docs/FORMAT-chunking.md).

The write order is kept here, in `_store`: the helper's packs and index are durable first, then
this process's, then (`manifests.commit`, which also checks that the lock still stands and that
no gc or repair wrote an index meanwhile) the manifest. So a snapshot never names a blob that
no index knows, and an interrupted one leaves only unreferenced packs for gc. On any failure
before the manifest, both writers delete the packs they wrote that no index names.
The files cache is saved only after the manifest: it never names content of an unsaved run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from dedupe.backup import space
from dedupe.backup.archiver import Archiver
from dedupe.backup.filescache import FilesCache
from dedupe.backup.filestore import ArchiveStats, Progress, Warn
from dedupe.backup.memory import bound_freed_memory
from dedupe.backup.offload import Offloader, storage_recipe
from dedupe.chunker import Chunker
from dedupe.model.snapshot import Snapshot
from dedupe.repo import manifests
from dedupe.repo.repository import GC_PENDING, Repository
from dedupe.repo.writer import BlobWriter

# Plaintext bytes waiting for this process's sealing workers at most (BlobWriter's max_inflight).
# With a helper process, which has its own (dedupe.backup.offload), this process stores the
# small files, the trees and what the helper has no room for: less suffices, and the sum of
# both processes' peaks is what the machine must hold.
ALONE_INFLIGHT = 64 << 20
PARENT_INFLIGHT = 32 << 20


@dataclass(frozen=True)
class SnapshotOptions:
    """What the snapshot records about itself, and how it reads its sources."""

    time: datetime  # with an offset
    host: str
    user: str
    tags: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()  # --exclude patterns (dedupe.backup.walkparts.Excluder)
    # The files cache lives in <cache_root>/<repository id>/; None: no files cache.
    cache_root: str | None = None


@dataclass(frozen=True)
class SnapshotResult:
    """The committed snapshot, what the walk read, and every byte the snapshot wrote (packs,
    index files and manifest)."""

    snapshot: Snapshot
    stats: ArchiveStats
    bytes_added: int


def snapshot_paths(
    repo: Repository,
    paths: Sequence[bytes],
    options: SnapshotOptions,
    warn: Warn = lambda text: None,
    progress: Progress | None = None,
    counted: space.SourceSize | None = None,
) -> SnapshotResult:
    """Back up the given absolute, normalised paths into a new snapshot. Sources and files that
    cannot be read are left out, reported through `warn` and listed in `stats.errors`.
    `counted`: the sources' size, counted since before the repository was unlocked (for the
    free-space warning; counted here if needed and not given)."""

    def archive(archiver: Archiver) -> bytes:
        return archiver.archive_paths(paths)

    return _take(repo, tuple(paths), options, warn, progress, archive, False, counted)


def snapshot_stream(
    repo: Repository,
    name: bytes,
    stream: BinaryIO,
    options: SnapshotOptions,
    warn: Warn = lambda text: None,
    progress: Progress | None = None,
    finish: Callable[[], None] | None = None,
) -> SnapshotResult:
    """Back up `stream` (stdin, or a command's stdout) as the file `/name`, with the snapshot's
    time as its mtime.

    `finish` is called once the stream reached its end, before anything is made durable: when it
    raises (the command that wrote the stream failed, dedupe.backup.command), no manifest is
    written: as for any interrupted snapshot, the packs that no index names are deleted and any
    other data written is left unreferenced, for gc."""
    mtime_ns = int(options.time.timestamp() * 1_000_000_000)

    def archive(archiver: Archiver) -> bytes:
        tree = archiver.archive_stream(name, stream, mtime_ns)
        if finish is not None:
            finish()
        return tree

    return _take(repo, (b"/" + name,), options, warn, progress, archive, True, None)


def helper_for(repo: Repository) -> Offloader | None:
    """A helper process (dedupe.backup.offload) with more than one core, on any storage it can
    open itself (`storage_recipe`: a local folder, SFTP, S3; its own ssh session or HTTP
    connections). Else, as on one core, the snapshot keeps one process."""
    if (os.cpu_count() or 1) < 2 or storage_recipe(repo.storage) is None:
        return None
    return Offloader(repo, workers=_workers())


def chunker_for(repo: Repository, stream: bool) -> Chunker:
    """The chunker a snapshot cuts with: the stream set for a stream (a database dump: its
    scattered row changes want small chunks), the file set for paths (docs/FORMAT-chunking.md).
    Both use the repository's secret seed."""
    params = repo.settings.stream_params if stream else repo.settings.chunker
    return Chunker(params, repo.key.chunker_seed)


def _workers() -> int:
    return max(2, os.cpu_count() or 2)


def _take(
    repo: Repository,
    paths: tuple[bytes, ...],
    options: SnapshotOptions,
    warn: Warn,
    progress: Progress | None,
    archive: Callable[[Archiver], bytes],
    stream: bool,
    counted: space.SourceSize | None,
) -> SnapshotResult:
    bound_freed_memory()
    with repo.lock(exclusive=False) as lock:
        _ = repo.index  # load before the clock starts on data
        space.warn_if_low_space(repo, paths, stream, warn, counted)
        files_cache = None
        if not stream and options.cache_root is not None:
            folder = os.path.join(options.cache_root, repo.settings.repo_id.hex())
            files_cache = FilesCache(folder, repo.hash)
            files_cache.check_generation(repo.index_names, repo.storage.exists(GC_PENDING))
        offload = helper_for(repo)
        inflight = PARENT_INFLIGHT if offload is not None else ALONE_INFLIGHT
        writer = BlobWriter(repo, workers=_workers(), max_inflight=inflight)
        archiver = Archiver(
            writer,
            chunker_for(repo, stream),
            files_cache,
            options.excludes,
            warn,
            progress,
            offload,
        )
        tree = _store(repo, archiver, writer, offload, archive)
        stats = archiver.stats
        snap = Snapshot(
            id=manifests.new_snapshot_id(),
            time=options.time,
            host=options.host,
            user=options.user,
            paths=paths,
            tags=options.tags,
            tree=tree,
            summary={
                "files": stats.files,
                "dirs": stats.dirs,
                "bytes_read": stats.bytes_read,
                "bytes_total": stats.bytes_total,
                "blobs_new": writer.stats.blobs_new,
                "raw_bytes_new": writer.stats.raw_bytes_new,
                # Packs and index written (FORMAT.md): what stats and plan read as "added".
                "bytes_added": writer.stats.stored_bytes,
            },
        )
        if counted is not None:
            counted.result()  # its free-space warning (if any) before the snapshot's report
        # The manifest last: it checks the lock and the index generation, then writes.
        manifest_bytes = manifests.commit(repo, lock, snap)
        if files_cache is not None:
            files_cache.save(repo.index_names)
    return SnapshotResult(snap, stats, writer.stats.stored_bytes + manifest_bytes)


def _store(
    repo: Repository,
    archiver: Archiver,
    writer: BlobWriter,
    offload: Offloader | None,
    archive: Callable[[Archiver], bytes],
) -> bytes:
    """Store the data and make it durable, the helper's index before ours: the root tree id.
    On a failure both writers stop and delete the packs they wrote that no index names."""
    try:
        tree = archive(archiver)
        # The helper's index first, then ours, then (the caller) the manifest.
        helped = offload.finish() if offload is not None else None
        if helped is not None:
            helper_stats, helper_index_names = helped
            writer.add_stats(helper_stats)
            repo.index_names.extend(helper_index_names)
        writer.flush()
    except BaseException:
        if offload is not None:
            offload.abort()
        writer.abort()
        raise
    return tree
