"""The local index cache's file layout: the one definition its reader and its writer share.

A cache file (docs/FORMAT.md, "Local cache") is a 192-byte header, then seven sections, each
aligned to 64 bytes: the names of the index files it covers, the pack ids, the fence (the first
key of each block of 128 entries), the block tags, and the entries as three columns (8-byte key,
32-byte blob id, four 32-bit fields). The header and the first four sections are authenticated
together by the header's MAC; each block of entries by its tag. Both keyed with `cache_key`.
Everything here is pure arithmetic on bytes, so `dedupe.repo.cachetable` (reading) and
`dedupe.repo.cachewriter` (writing) cannot disagree about where a section lies or what a tag
covers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

import blake3
import numpy as np

from dedupe import codec
from dedupe.errors import FormatError

MAGIC = b"DDXCACHE"
VERSION = 2  # 2: the names section records the index floor (a version-1 cache is rebuilt)
BLOCK = 128  # entries per authenticated block
TAG_BYTES = 16
ALIGN = 64
# magic, version, block, repo id, entries, packs, names length, 7 section offsets, file size
HEADER = struct.Struct("<8sII16s11Q")
HEADER_BYTES = 192  # the fields above, their 32-byte MAC, padding
WIDTHS = (8, 32, 16)  # bytes per entry of the keys, ids and fields columns

# (dtype, shape) of the mapped keys, ids and fields columns.
COLUMN_LAYOUT: list[tuple[np.dtype[Any], tuple[int, ...]]] = [
    (np.dtype("<u8"), (-1,)),
    (np.dtype(np.uint8), (-1, 32)),
    (np.dtype("<u4"), (-1, 4)),
]


def cache_key(enc_key: bytes, id_key: bytes, repo_id: bytes) -> bytes:
    """The MAC key: derived (BLAKE3 derive_key), so it is no blob id and reveals no key."""
    return blake3.blake3(
        enc_key + id_key + repo_id, derive_key_context="dedupe 2026 local index cache v1 mac"
    ).digest()


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def blocks(n: int) -> int:
    return -(-n // BLOCK)


def section_sizes(entries: int, packs: int, names_len: int) -> list[int]:
    """Names, pack ids, fence, tags, keys, ids, fields: the sections, in file order."""
    count = blocks(entries)
    return [
        names_len,
        32 * packs,
        8 * count,
        TAG_BYTES * count,
        *(w * entries for w in (8, 32, 16)),
    ]


def pack_header(
    repo_id: bytes, entries: int, packs: int, names_len: int, offsets: Sequence[int], size: int
) -> bytes:
    """The header's fields (without their MAC)."""
    return HEADER.pack(MAGIC, VERSION, BLOCK, repo_id, entries, packs, names_len, *offsets, size)


def unpack_header(head: bytes, repo_id: bytes, file_size: int) -> tuple[int, int, int, list[int]]:
    """(entries, packs, names length, section offsets) of a header of this repository's cache
    whose sections lie in order, aligned, within the file; ValueError for anything else. The
    caller still checks the MAC."""
    magic, version, block, owner, n, packs, names_len, *offsets, size = HEADER.unpack(
        head[: HEADER.size]
    )
    if (magic, version, block, owner, size) != (MAGIC, VERSION, BLOCK, repo_id, file_size):
        raise ValueError("index cache: not ours, or truncated")
    at = HEADER_BYTES
    for offset, length in zip(offsets, section_sizes(n, packs, names_len), strict=True):
        if offset < at or offset % ALIGN:
            raise ValueError("index cache: bad layout")
        at = offset + length
    if at > size:
        raise ValueError("index cache: sections beyond the end")
    return n, packs, names_len, offsets


def block_tag(
    key: bytes, number: int, columns: Sequence[bytes | memoryview], start: int, end: int
) -> bytes:
    """The tag of rows [start, end) of the (keys, ids, fields) byte columns, as block `number`."""
    tag = blake3.blake3(number.to_bytes(8, "little"), key=key)
    for column, width in zip(columns, WIDTHS, strict=True):
        tag.update(column[width * start : width * end])
    return tag.digest(TAG_BYTES)


def encode_names(covered: Iterable[str], superseded: Iterable[str], floor: int) -> bytes:
    names = {"covered": sorted(covered), "superseded": sorted(superseded), "floor": floor}
    return codec.pack({"v": VERSION} | names)


def decode_names(data: bytes) -> tuple[frozenset[str], frozenset[str], int]:
    obj = codec.unpack(data, "index cache names")
    lists = [codec.field(obj, k, list, "index cache") for k in ("covered", "superseded")]
    for names in lists:
        if not all(isinstance(n, str) and len(n) == 64 for n in names):
            raise FormatError("index cache: malformed names")
    floor = codec.field(obj, "floor", int, "index cache")
    return frozenset(lists[0]), frozenset(lists[1]), floor
