"""check's survey of the index: every entry of every current index file as numpy columns.

At tens of millions of chunks a Python object per entry costs several GiB; the survey keeps the
entries in an `EntryTable` (`dedupe.repo.entrytable`, shared with gc: about 60 bytes an entry) and
builds `BlobEntry` objects for one pack at a time, when check compares that pack with its header
or reads it.

What it answers is what check's dict of dicts answered before:
- an id's location is its first entry (index files in listing order, entries in file order), as in
  `ChunkIndex`; `len` counts distinct ids;
- a pack's entries are its first entry per id, in order; a pack named with no entries is named;
- files superseded by another current file are left out, and so are files below the index floor
  (`dedupe.repo.indexfile.judge`: put back from an old copy of `index/`) and packs `forget` drops.
Index files are read one at a time. A file read before the file that supersedes it or the floor
that excludes it, or packs forgotten after reading, make the survey read the current files again
(rare: an interrupted gc, a put-back file) rather than hold every decoded file or compact the
table.

A put-back file is a warning, not damage: every reader ignores it (as it ignores a superseded
file), no snapshot loses anything, and gc deletes it. Failing `check` (exit 14) would sound the
nightly alarm about a repository whose every snapshot restores; the warning says where it came
from and what removes it. A damaged index file is an error, and names the command that fixes it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dedupe.crypto.seal import content_hash
from dedupe.errors import DedupeError, ObjectNotFound
from dedupe.repo.entrytable import MIN_INDEX_BYTES_PER_ENTRY, EntryTable
from dedupe.repo.index import Location
from dedupe.repo.indexfile import Generation, decode_index, judge
from dedupe.repo.pack import BlobEntry
from dedupe.repo.repository import Repository

__all__ = ["IndexSurvey", "REPAIR_HINT"]

REPAIR_HINT = "'dedupe repair index' rebuilds the index from the packs"

Report = Callable[[str], None]


class IndexSurvey:
    """Fill with `load`, optionally `forget` packs, then `seal` once before any lookup."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.current: list[str] = []
        self._expected = 0
        self.table = EntryTable()
        self._distinct = 0
        self._every_row = np.zeros(0, dtype=bool)

    def load(self, error: Report, warn: Report) -> int:
        """Read every index file (listing order); report damaged and superseded files. Returns
        how many are current."""
        storage = self.repo.storage
        listing = list(storage.list("index/"))
        self._expected = sum(i.size for i in listing) // MIN_INDEX_BYTES_PER_ENTRY
        self.table = EntryTable(self._expected)
        generations: dict[str, Generation] = {}
        superseded: set[str] = set()
        floor = 0
        added: set[str] = set()
        for info in listing:
            name = info.name.split("/")[-1]
            try:
                data = storage.get(info.name)
            except ObjectNotFound:
                continue
            if content_hash(data).hex() != name:
                error(f"index file {name[:16]} does not match its name (damaged); {REPAIR_HINT}")
            try:
                index_file = decode_index(data, self.repo.sealer, name[:16])
            except DedupeError as exc:
                error(f"{exc}; {REPAIR_HINT}")
                continue
            del data
            generations[name] = index_file.generation
            floor = max(floor, index_file.floor)
            if index_file.gen >= floor:
                superseded.update(index_file.supersedes)
            if name not in superseded and index_file.gen >= floor:
                added.add(name)
                for column in index_file.columns:
                    self.table.add_pack(column.pack_id, 0, True, column.ids, column.fields)
            del index_file
        verdict = judge(generations)
        for name in generations:
            if name in verdict.superseded:
                warn(f"index file {name[:16]} is superseded (left by an interrupted gc)")
            elif name in verdict.put_back:
                warn(
                    f"index file {name[:16]} is older than the current index and is ignored: "
                    "it was put back from an old copy; 'dedupe gc' removes it"
                )
        self.current = verdict.current
        if added - set(self.current):
            self._reread(set())
        return len(self.current)

    def _reread(self, skip: set[bytes]) -> None:
        """Fill the table again from the current files, leaving out the packs in `skip` (the
        files were judged by `load`; one that now fails to read is left out)."""
        self.table = EntryTable()  # one table at a time
        self.table = EntryTable(self._expected)
        for name in self.current:
            try:
                index_file = decode_index(
                    self.repo.storage.get(f"index/{name}"), self.repo.sealer, name[:16]
                )
            except DedupeError:
                continue
            for column in index_file.columns:
                if column.pack_id not in skip:
                    self.table.add_pack(column.pack_id, 0, True, column.ids, column.fields)
            del index_file

    @property
    def pack_ids(self) -> list[bytes]:
        """The packs the current files name, in the order they were first named."""
        return self.table.pack_ids

    def names(self, pack_id: bytes) -> bool:
        return self.table.number(pack_id) is not None

    def forget(self, packs: set[bytes]) -> None:
        """Leave out every entry of these packs (deleted by an interrupted gc)."""
        if packs & set(self.pack_ids):
            self._reread(packs)

    def seal(self) -> None:
        self.table.seal()
        self._distinct = self.table.distinct()
        self._every_row = np.ones(self.table.rows, dtype=bool)

    # --- after seal ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Distinct blob ids."""
        return self._distinct

    def __contains__(self, blob_id: bytes) -> bool:
        return self.table.find(blob_id) is not None

    def lookup(self, blob_id: bytes) -> Location | None:
        row = self.table.find(blob_id)
        if row is None:
            return None
        number, offset, length, raw_length = row
        return Location(self.table.pack_ids[number], offset, length, raw_length)

    def entries(self, pack_id: bytes) -> dict[bytes, BlobEntry]:
        """The pack's entries by id (the first of each id), in order; {} for a pack not named."""
        number = self.table.number(pack_id)
        if number is None:
            return {}
        rows = self.table.pack_rows(number, self._every_row)
        ids = self.table.ids[rows].tobytes()
        found: dict[bytes, BlobEntry] = {}
        for i, (offset, length, raw_length) in enumerate(self.table.fields[rows].tolist()):
            blob_id = ids[32 * i : 32 * i + 32]
            if blob_id not in found:
                found[blob_id] = BlobEntry(blob_id, offset, length, raw_length)
        return found
