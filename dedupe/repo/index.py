"""The chunk index: which pack holds each blob, where, and how big.

In memory it is the union of every index file. Index files are written only after the packs
they name are durable, and are replaced (gc) by writing a superseding file before deleting.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dedupe import codec
from dedupe.crypto.seal import Sealer
from dedupe.errors import FormatError
from dedupe.repo.pack import BlobEntry, entry_from_list


@dataclass(frozen=True, slots=True)
class Location:
    """A blob's place in the repository."""

    pack_id: bytes
    offset: int
    length: int
    raw_length: int


class ChunkIndex:
    """blob id -> location, for every blob the repository's index files name.

    Packs are numbered internally so each entry stores a small int instead of a 32-byte pack id.
    """

    def __init__(self) -> None:
        self._pack_ids: list[bytes] = []
        self._pack_numbers: dict[bytes, int] = {}
        self._entries: dict[bytes, tuple[int, int, int, int]] = {}

    def add_pack(self, pack_id: bytes, entries: Iterable[BlobEntry]) -> None:
        number = self._pack_numbers.get(pack_id)
        if number is None:
            number = self._pack_numbers[pack_id] = len(self._pack_ids)
            self._pack_ids.append(pack_id)
        table = self._entries
        for e in entries:
            if e.blob_id not in table:
                table[e.blob_id] = (number, e.offset, e.length, e.raw_length)

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, blob_id: bytes) -> Location | None:
        item = self._entries.get(blob_id)
        if item is None:
            return None
        number, offset, length, raw_length = item
        return Location(self._pack_ids[number], offset, length, raw_length)

    def items(self) -> Iterator[tuple[bytes, Location]]:
        for blob_id in self._entries:
            loc = self.lookup(blob_id)
            assert loc is not None
            yield blob_id, loc

    def pack_ids(self) -> list[bytes]:
        return list(self._pack_ids)


@dataclass(frozen=True)
class IndexFile:
    """The decoded contents of one index file."""

    packs: list[tuple[bytes, list[BlobEntry]]]
    supersedes: list[str]


def encode_index(
    packs: list[tuple[bytes, list[BlobEntry]]], supersedes: list[str], sealer: Sealer
) -> bytes:
    return sealer.seal(
        codec.pack(
            {
                "v": codec.FORMAT_VERSION,
                "packs": [[pid, [e.to_list() for e in entries]] for pid, entries in packs],
                "supersedes": supersedes,
            }
        )
    )


def decode_index(data: bytes, sealer: Sealer, name: str) -> IndexFile:
    what = f"index file {name}"
    obj = codec.check_version(codec.unpack(sealer.open(data, what), what), what)
    packs = []
    for item in codec.field(obj, "packs", list, what):
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
            raise FormatError(f"{what}: malformed pack entry")
        pack_id = codec.blob_id(item[0], what)
        packs.append((pack_id, [entry_from_list(e, None, what) for e in item[1]]))
    supersedes = codec.field(obj, "supersedes", list, what)
    if not all(isinstance(s, str) and len(s) == 64 for s in supersedes):
        raise FormatError(f"{what}: malformed supersedes list")
    return IndexFile(packs, supersedes)
