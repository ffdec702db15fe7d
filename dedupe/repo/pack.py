"""Pack files: many sealed blobs followed by a sealed header and its length.

`PackBuilder` accumulates blobs; `finish` seals the header and returns the pack bytes and its id
(BLAKE3 of the bytes). `read_header` parses a pack's header from its tail and validates every
entry against the pack's size, so a hostile or damaged pack raises DamageError/FormatError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dedupe import codec
from dedupe.crypto.seal import Sealer, content_hash
from dedupe.errors import FormatError

TRAILER = struct.Struct("<I")
MAX_HEADER = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobEntry:
    """Where a blob lives inside a pack."""

    blob_id: bytes
    offset: int
    length: int
    raw_length: int


def entry_from_list(item: object, pack_size: int | None, what: str) -> BlobEntry:
    """Validate one [id, offset, length, raw_length] item (bounds against pack_size if known)."""
    if not isinstance(item, list) or len(item) != 4:
        raise FormatError(f"{what}: malformed blob entry")
    blob_id, offset, length, raw_length = item
    codec.blob_id(blob_id, what)
    for value in (offset, length, raw_length):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise FormatError(f"{what}: malformed blob entry")
    if length <= 40 or raw_length > 1 << 31:
        raise FormatError(f"{what}: implausible blob size")
    # A pack is at most about 1 GiB (the config's cap on pack_size): anything past 4 GiB is
    # hostile, and the compact index stores these fields in 32 bits.
    if offset >= 1 << 32 or length >= 1 << 32:
        raise FormatError(f"{what}: blob entry lies beyond any plausible pack")
    if pack_size is not None and offset + length > pack_size:
        raise FormatError(f"{what}: blob entry points past the end of the pack")
    return BlobEntry(blob_id, offset, length, raw_length)


class PackBuilder:
    """An open pack being filled.

    Sealed blobs are kept as they come and joined once in `finish`: appending each to one
    growing buffer would copy every byte twice more, holding the GIL each time.
    """

    def __init__(self) -> None:
        self._parts: list[bytes | bytearray] = []
        self._size = 0
        self.entries: list[BlobEntry] = []

    def add(self, blob_id: bytes, sealed: bytes | bytearray, raw_length: int) -> None:
        self.entries.append(BlobEntry(blob_id, self._size, len(sealed), raw_length))
        self._parts.append(sealed)
        self._size += len(sealed)

    def __len__(self) -> int:
        return self._size

    def finish(self, sealer: Sealer) -> tuple[bytes, bytes]:
        """(pack_id, pack bytes). The builder must not be used afterwards."""
        header = sealer.seal(
            codec.pack(
                {
                    "v": codec.FORMAT_VERSION,
                    "blobs": [(e.blob_id, e.offset, e.length, e.raw_length) for e in self.entries],
                }
            )
        )
        self._parts += (header, TRAILER.pack(len(header)))
        data = b"".join(self._parts)
        self._parts = []
        return content_hash(data), data


def header_span(pack_size: int, tail: bytes) -> tuple[int, int]:
    """(offset, length) of the sealed header, from the pack's last 4 bytes."""
    if pack_size < TRAILER.size or len(tail) != TRAILER.size:
        raise FormatError("pack is too short to hold a header")
    (length,) = TRAILER.unpack(tail)
    if length > MAX_HEADER or length + TRAILER.size > pack_size:
        raise FormatError("pack header length is implausible")
    return pack_size - TRAILER.size - length, length


def decode_header(sealed_header: bytes, sealer: Sealer, pack_size: int) -> list[BlobEntry]:
    """The entries of a pack's header, validated against the pack size."""
    what = "pack header"
    obj = codec.check_version(codec.unpack(sealer.open(sealed_header, what), what), what)
    blobs = codec.field(obj, "blobs", list, what)
    data_end = pack_size - TRAILER.size - len(sealed_header)
    return [entry_from_list(item, data_end, what) for item in blobs]
