"""`dedupe repair index`: rebuild the index from the packs' own headers.

Every pack ends with its sealed header, which lists the blobs it holds, so the index can always
be written again from the packs: after an index file is damaged (gc then stops: it cannot tell
what that file named) or lost (its packs look unindexed). Under the exclusive lock:

1. Decode every index file listed (damaged ones are noted): their generations give the new
   index its generation G+1 (`dedupe.repo.indexfile.judge`). Files that count for nothing already
   (superseded, put back from an old copy, damaged: every reader skips them) are deleted first;
   that frees their space and changes nothing any reader sees.
2. Read every pack's header (its MAC, version and entry bounds are checked: all a header gives
   without reading the pack). A pack whose header cannot be read is reported and left in place;
   its blobs are left out, unless a current index file named the pack, whose entries (sealed
   too) are kept. Entries go into new index files of at most `gcindex.MAX_FILE_ENTRIES` as they
   come; until the last one is durable the old files are current as well, and the new ones name
   only packs that exist with the entries their headers give: a kill leaves a sound index.
3. The last file supersedes every old index file and raises the floor to G+1; then the old files,
   `gc-pending` (the new index names no deleted pack) and, space allowing, `reserve` follow.

On a full disk the reserve is spent when a write meets OutOfSpace (gc does the same); if the
index still does not fit, the new files are deleted again and OutOfSpace (exit 13) is raised:
the old index is untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from dedupe.crypto.seal import content_hash
from dedupe.errors import DamageError, DedupeError, ObjectNotFound, OutOfSpace, StorageError
from dedupe.repo import reserve
from dedupe.repo.indexfile import (
    Generation,
    PackColumns,
    Verdict,
    decode_index,
    encode_columns,
    judge,
)
from dedupe.repo.pack import TRAILER, BlobEntry, decode_header, header_span
from dedupe.repo.repository import GC_PENDING, Repository, pack_id_from_name, pack_name
from dedupe.units import format_bytes

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): phase "headers" (packs read)."""

# Entries per index file written (as gc's files: `dedupe.gc.indexfiles.MAX_FILE_ENTRIES`).
MAX_FILE_ENTRIES = 100_000


@dataclass
class RepairResult:
    """What `repair index` did (or, with dry_run, would do)."""

    dry_run: bool
    packs: int = 0
    """Packs the new index names."""
    blobs: int = 0
    """Entries the new index holds."""
    index_files_written: int = 0
    index_files_removed: int = 0
    unreadable_packs: list[str] = field(default_factory=list)
    """Packs whose header cannot be read (left in place)."""
    kept_from_index: list[str] = field(default_factory=list)
    """Unreadable packs whose entries came from a current index file instead."""
    damaged_index_files: list[str] = field(default_factory=list)
    reserve_spent: bool = False


@dataclass
class _OldIndex:
    names: list[str]
    verdict: Verdict
    damaged: list[str]
    named_by: dict[bytes, str]
    """Pack -> a current, readable index file naming it."""


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


def run(repo: Repository, dry_run: bool = False, progress: Progress | None = None) -> RepairResult:
    """`repair_index` under the exclusive lock (a dry run takes none: it changes nothing)."""
    if dry_run:
        return repair_index(repo, True, progress)
    had_reserve = repo.storage.exists(reserve.RESERVE_NAME)
    with repo.lock(exclusive=True, frees_space=True):
        # On a full disk, taking the lock may have spent the reserve already.
        spent = had_reserve and not repo.storage.exists(reserve.RESERVE_NAME)
        try:
            result = repair_index(repo, False, progress)
        finally:
            repo.forget_index()  # the next reader loads the index as repair left it
        result.reserve_spent |= spent
        return result


def repair_index(
    repo: Repository, dry_run: bool = False, progress: Progress | None = None
) -> RepairResult:
    """Rebuild the index (see the module docstring). The caller holds the exclusive lock,
    except for a dry run."""
    report = progress or _no_progress
    result = RepairResult(dry_run=dry_run)
    old = _read_old_index(repo)
    result.damaged_index_files = old.damaged
    packs = sorted(
        (pack_id, info.size)
        for info in repo.storage.list("data/")
        if (pack_id := pack_id_from_name(info.name)) is not None
    )
    gen = old.verdict.top + 1
    writer = _Writer(repo, gen, old.verdict.floor, dry_run, result)
    ignored = [*old.damaged, *sorted(old.verdict.superseded | old.verdict.put_back)]
    if not dry_run:
        result.index_files_removed += _delete_index_files(repo, ignored)
    unreadable: list[tuple[bytes, int]] = []
    for done, (pack_id, size) in enumerate(packs, 1):
        try:
            entries = read_header(repo, pack_id, size)
        except (DamageError, StorageError):
            unreadable.append((pack_id, size))
        else:
            ids = b"".join(e.blob_id for e in entries)
            fields = np.array([(e.offset, e.length, e.raw_length) for e in entries], "<u4")
            writer.add(PackColumns(pack_id, ids, fields.reshape(-1, 3)))
        report("headers", done, len(packs))
    for columns in _from_old_files(repo, old, unreadable):
        writer.add(columns)
        result.kept_from_index.append(columns.pack_id.hex())
    result.unreadable_packs = [p.hex() for p, _size in unreadable]
    remaining = [n for n in old.names if n not in set(ignored)]
    writer.finish(old.names)  # the last file supersedes every old file, ignored ones too
    if not dry_run:
        result.index_files_removed += _delete_index_files(repo, remaining)
        if repo.storage.exists(GC_PENDING):
            repo.storage.delete(GC_PENDING)
        reserve.ensure(repo.storage)
    else:
        result.index_files_removed = len(old.names)
    return result


def read_header(repo: Repository, pack_id: bytes, size: int) -> list[BlobEntry]:
    """A pack's header entries (MAC, version and bounds checked); DamageError or StorageError."""
    name = pack_name(pack_id)
    tail = repo.storage.get(name, size - TRAILER.size, TRAILER.size) if size >= 4 else b""
    offset, length = header_span(size, tail)
    entries = decode_header(repo.storage.get(name, offset, length), repo.sealer, size)
    if len({e.blob_id for e in entries}) != len(entries):
        raise DamageError(f"pack {pack_id.hex()[:16]}: its header names a blob twice")
    return entries


def _read_old_index(repo: Repository) -> _OldIndex:
    """Every listed index file's generation; damaged ones by name. Only pack ids are kept."""
    names: list[str] = []
    generations: dict[str, Generation] = {}
    damaged: list[str] = []
    packs_of: dict[str, list[bytes]] = {}
    for info in repo.storage.list("index/"):
        name = info.name.split("/")[-1]
        try:
            data = repo.storage.get(info.name)
            if content_hash(data).hex() != name:
                raise DamageError(f"index file {name[:16]} does not match its name")
            index_file = decode_index(data, repo.sealer, name)
        except ObjectNotFound:
            continue
        except DamageError:
            names.append(name)
            damaged.append(name)
            continue
        names.append(name)
        generations[name] = index_file.generation
        packs_of[name] = [c.pack_id for c in index_file.columns]
    verdict = judge(generations)
    named_by = {p: n for n in verdict.current for p in packs_of[n]}
    return _OldIndex(names, verdict, damaged, named_by)


def _from_old_files(
    repo: Repository, old: _OldIndex, unreadable: list[tuple[bytes, int]]
) -> Iterable[PackColumns]:
    """For packs whose header cannot be read: the entries a current index file gives, those
    within the pack's bytes (the rest are lost with the pack's end)."""
    wanted: dict[str, dict[bytes, int]] = {}
    for pack_id, size in unreadable:
        if pack_id in old.named_by:
            wanted.setdefault(old.named_by[pack_id], {})[pack_id] = size
    for name, sizes in wanted.items():
        try:
            index_file = decode_index(repo.storage.get(f"index/{name}"), repo.sealer, name)
        except (DamageError, ObjectNotFound):
            continue
        for c in index_file.columns:
            if c.pack_id in sizes:
                inside = c.fields[:, 0].astype(np.int64) + c.fields[:, 1] <= sizes[c.pack_id] - 4
                ids = np.frombuffer(c.ids, np.uint8).reshape(-1, 32)[inside].tobytes()
                yield PackColumns(c.pack_id, ids, np.ascontiguousarray(c.fields[inside]))
                del sizes[c.pack_id]


def _delete_index_files(repo: Repository, names: Iterable[str]) -> int:
    deleted = 0
    for name in names:
        try:
            repo.storage.delete(f"index/{name}")
            deleted += 1
        except ObjectNotFound:
            pass
    return deleted


class _Writer:
    """Writes the new index as files of at most MAX_FILE_ENTRIES entries, as packs come."""

    def __init__(
        self, repo: Repository, gen: int, floor: int, dry_run: bool, result: RepairResult
    ) -> None:
        self.repo, self.gen, self.floor, self.dry_run = repo, gen, floor, dry_run
        self.result = result
        self.batch: list[PackColumns] = []
        self.entries = 0
        self.written: list[str] = []

    def add(self, columns: PackColumns) -> None:
        count = len(columns.ids) // 32
        if self.batch and self.entries + count > MAX_FILE_ENTRIES:
            # Not the last file: it supersedes nothing and leaves the floor where it is.
            self._put(Generation(self.gen, self.floor))
        self.batch.append(columns)
        self.entries += count
        self.result.packs += 1
        self.result.blobs += count

    def finish(self, supersedes: list[str]) -> None:
        self._put(Generation(self.gen, self.gen, tuple(sorted(supersedes))))

    def _put(self, g: Generation) -> None:
        batch, self.batch, self.entries = self.batch, [], 0
        self.result.index_files_written += 1
        if self.dry_run:
            return
        data = encode_columns(batch, list(g.supersedes), self.repo.sealer, g.gen, g.floor)
        name = content_hash(data).hex()
        try:
            self._store(name, data)
        except OutOfSpace:
            self._undo()
            raise OutOfSpace(
                "there is not enough free space to write the new index (a file of "
                f"{format_bytes(len(data))} did not fit), so the index was left as it was "
                "(only index files that nothing reads were removed). Free some space on the disk "
                "that holds the repository, then run 'dedupe repair index' again"
            ) from None
        self.written.append(name)

    def _store(self, name: str, data: bytes) -> None:
        try:
            self.repo.storage.put(f"index/{name}", data)
        except OutOfSpace:
            # A full disk is what this command is for: spend the reserve (gc writes it back
            # once there is room again), then try once more.
            if not reserve.release(self.repo.storage):
                raise
            self.result.reserve_spent = True
            self.repo.storage.put(f"index/{name}", data)

    def _undo(self) -> None:
        """Delete the files written so far: none supersedes anything, so the old index is whole
        without them (any that cannot be deleted names only existing packs correctly)."""
        for name in self.written:
            try:
                self.repo.storage.delete(f"index/{name}")
            except DedupeError:
                pass
        self.result.index_files_written -= len(self.written) + 1
        self.written = []
