"""gc's bounded index files: the current index files, which packs each names, and the
replacements gc writes in their place.

`IndexFiles` tracks the current index files and which packs each names, and writes replacements
of at most `MAX_FILE_ENTRIES` entries each (whole packs). Only the last file of a replacement
supersedes the files it replaces: until that one is durable, the old files are still current and
name every pack the new ones name, so a crash at any instant leaves a complete index. Every file
gc writes has a generation above every current file's; the last file of a replacement of every
current file also raises the floor to it (`dedupe.repo.indexfile.judge`), so no file gc replaced
can count again if put back from an old copy. A replacement of some files (a repack) cannot raise
the floor without disowning the others: its last file supersedes the replaced files and
everything they superseded (`Generation.inherits`), until the next full replacement.

Packs are numbered as in the survey's entry table (`dedupe.repo.entrytable`); entries are written
from its columns, never as an object per entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dedupe.crypto.seal import content_hash
from dedupe.errors import DedupeError, ObjectNotFound, OutOfSpace
from dedupe.gc.plan import GcPlan
from dedupe.repo.entrytable import EntryTable
from dedupe.repo.indexfile import Generation, PackColumns, encode_columns
from dedupe.repo.repository import Repository

# Entries per index file gc writes (~4.4 MB; decoding one costs about three times that). A pack
# is never split, so a file holds more only when a single pack does.
MAX_FILE_ENTRIES = 100_000


@dataclass
class _File:
    packs: list[int]
    entries: int


class IndexFiles:
    """The current index files and the packs each names; writes bounded replacements.

    Packs are numbered as in the table; packs this gc writes get numbers after those, and their
    entries are kept as columns (44 bytes an entry) in case a later batch rewrites their file.
    """

    def __init__(
        self,
        repo: Repository,
        table: EntryTable,
        plan: GcPlan,
        files: dict[str, list[int]],
        generations: Mapping[str, Generation] | None = None,
        floor: int = 0,
    ) -> None:
        """`files`: the current index files and the packs each names; `generations`: theirs
        (a file missing there counts as generation 0); `floor`: the index floor in force."""
        self.repo = repo
        self.table = table
        self.named = plan.named
        self.counts = plan.named_count
        self._new: dict[int, PackColumns] = {}
        self.files: dict[str, _File] = {}
        self._naming: dict[int, set[str]] = {}  # pack -> the current files that name it
        # Current file -> its generation; the floor in force; the highest gen or floor so far.
        known = generations or {}
        self.generations = {n: known.get(n, Generation()) for n in files}
        self.floor = floor
        self.top = max([floor, *(max(g.gen, g.floor) for g in self.generations.values())])
        for name, packs in files.items():
            self._register(name, packs)
        self.deleted = 0

    def _register(self, name: str, packs: list[int]) -> None:
        self.files[name] = _File(packs, self._entries(packs))
        for pack in packs:
            self._naming.setdefault(pack, set()).add(name)

    def _unregister(self, name: str) -> None:
        self.generations.pop(name, None)
        gone = self.files.pop(name, None)
        for pack in gone.packs if gone is not None else ():
            self._naming[pack].discard(name)

    def pack_id(self, pack: int) -> bytes:
        if pack < len(self.table.pack_ids):
            return self.table.pack_ids[pack]
        return self._new[pack].pack_id

    def _count(self, pack: int) -> int:
        new = self._new.get(pack)
        return int(self.counts[pack]) if new is None else len(new.ids) // 32

    def _entries(self, packs: Iterable[int]) -> int:
        return sum(self._count(p) for p in packs)

    def add_new_pack(self, columns: PackColumns) -> int:
        """Register a pack this gc wrote (durably); its number."""
        number = len(self.table.pack_ids) + len(self._new)
        self._new[number] = columns
        return number

    def naming(self, packs: Iterable[int]) -> list[str]:
        """The current files that name any of `packs`."""
        found: set[str] = set()
        for pack in packs:
            found |= self._naming.get(pack, set())
        return sorted(found)

    def entries_of(self, names: Iterable[str]) -> tuple[int, int]:
        """(packs, entries) the files name."""
        chosen = [self.files[n] for n in names]
        return sum(len(f.packs) for f in chosen), sum(f.entries for f in chosen)

    def columns(self, pack: int) -> PackColumns:
        new = self._new.get(pack)
        if new is not None:
            return new
        rows = self.table.pack_rows(pack, self.named)
        return PackColumns(
            self.pack_id(pack), self.table.ids[rows].tobytes(), self.table.fields[rows]
        )

    def replace(self, drop: Sequence[int], add: Sequence[int]) -> None:
        """Files naming what the files naming `drop` name, minus `drop`, plus `add`."""
        affected = self.naming(drop)
        dropped = set(drop)
        keep = [p for name in affected for p in self.files[name].packs if p not in dropped]
        self.commit([*dict.fromkeys(keep), *add], affected)

    def commit(self, packs: Sequence[int], replaced: Sequence[str]) -> None:
        """Name `packs` in new files of at most MAX_FILE_ENTRIES entries, the last superseding
        `replaced`; then delete `replaced`. On OutOfSpace the files written so far are deleted
        again (they name only packs that `replaced` or other current files name, or packs this
        gc wrote; any that cannot be deleted stay registered as current) and it is raised.

        The new files' generation is above every current file's. When `replaced` is every
        current file, the last one also raises the floor to that generation: from then on no
        replaced file counts, even put back. Otherwise the last one supersedes what the replaced
        files superseded too (those that carry it forward, `Generation.inherits`)."""
        gen = self.top + 1
        full = set(replaced) >= self.files.keys()
        supersedes = set(replaced)
        if not full:
            for name in replaced:
                g = self.generations.get(name, Generation())
                supersedes.update(g.supersedes if g.inherits else ())
        last = Generation(gen, gen if full else self.floor, tuple(sorted(supersedes)))
        groups: list[list[int]] = [[]]
        entries = 0
        for pack in packs:
            count = self._count(pack)
            if groups[-1] and entries + count > MAX_FILE_ENTRIES:
                groups.append([])
                entries = 0
            groups[-1].append(pack)
            entries += count
        written: list[tuple[str, list[int], Generation]] = []
        try:
            for i, group in enumerate(groups):
                # Only the last file supersedes (and raises the floor): until it is durable the
                # replaced files are current and name everything the new ones name.
                g = last if i == len(groups) - 1 else Generation(gen, self.floor)
                written.append((self._put([self.columns(p) for p in group], g), group, g))
        except OutOfSpace:
            for name, group, g in written:
                if not self._delete_quietly(name):
                    self._register(name, group)
                    self.generations[name] = g
            self.top = gen
            raise
        for name, group, g in written:
            self._register(name, group)
            self.generations[name] = g
        self.top, self.floor = gen, last.floor
        self.delete(replaced)

    def _put(self, columns: list[PackColumns], g: Generation) -> str:
        data = encode_columns(columns, list(g.supersedes), self.repo.sealer, g.gen, g.floor)
        name = content_hash(data).hex()
        self.repo.storage.put(f"index/{name}", data)
        return name

    def delete(self, names: Iterable[str]) -> None:
        for name in list(names):
            try:
                self.repo.storage.delete(f"index/{name}")
                self.deleted += 1
            except ObjectNotFound:
                pass
            self._unregister(name)

    def _delete_quietly(self, name: str) -> bool:
        try:
            self.repo.storage.delete(f"index/{name}")
        except ObjectNotFound:
            pass
        except DedupeError:
            return False
        return True
