"""Encoding of one blob: compress (when it helps), seal; and the reverse, with verification.

Stored form: seal(mode || payload), mode 0 = raw, 1 = zstd frame. Decoding checks the MAC, the
raw length and the keyed id: a mismatch is damage, never data. zstd contexts are per thread.

Compression is kept only when it saves more than 1/64. Scans, photos and archives never do, and
their chunks come in runs (a file's chunks follow each other on a thread): after a chunk that did
not compress, the next is first judged by a SAMPLE-byte slice compressed at level 1, and stored
raw without a full compression when that slice does not compress either; every PROBE_RUN-th chunk
of such a run is compressed in full anyway. A real JPEG compresses at ~1.5 GB/s at level 3 (all
of it for nothing); the probe costs ~1/16 of that. The choice only ever picks between the two
modes a reader already decodes, so it changes no stored format.
"""

from __future__ import annotations

import threading

import zstandard

from dedupe.crypto.seal import IdHasher, Sealer
from dedupe.errors import DamageError

# Blobs up to this size (every data chunk; most trees) are decompressed in one shot.
ONE_SHOT_LIMIT = 32 << 20

MODE_RAW = 0
MODE_ZSTD = 1

# The probe of a chunk that follows one that did not compress (see the module docstring).
SAMPLE = 4096
PROBE_RUN = 8


def parse_compression(spec: str) -> int:
    """'zstd', 'zstd:LEVEL' or 'none' -> zstd level (0 = none). ValueError if malformed."""
    if spec == "none":
        return 0
    if spec == "zstd":
        return 3
    if spec.startswith("zstd:"):
        level = int(spec[5:])
        if not 1 <= level <= 22:
            raise ValueError("zstd level must be 1..22")
        return level
    raise ValueError(f"unknown compression {spec!r} (use zstd, zstd:LEVEL or none)")


class BlobCodec:
    """Turns plaintext chunks into stored blobs and back, for one repository."""

    def __init__(self, sealer: Sealer, hasher: IdHasher, level: int) -> None:
        self.sealer = sealer
        self.hash = hasher
        self.level = level
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        comp = getattr(self._local, "comp", None)
        if comp is None:
            comp = self._local.comp = zstandard.ZstdCompressor(level=self.level)
        return comp

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dec = getattr(self._local, "dec", None)
        if dec is None:
            dec = self._local.dec = zstandard.ZstdDecompressor()
        return dec

    def _prober(self) -> zstandard.ZstdCompressor:
        probe = getattr(self._local, "probe", None)
        if probe is None:
            probe = self._local.probe = zstandard.ZstdCompressor(level=1)
        return probe

    def encode(self, data: bytes | memoryview) -> bytes | bytearray:
        """The sealed stored form of `data`."""
        if self.level:
            local = self._local
            # How many chunks in a row this thread stored raw (0: the last one compressed).
            run = getattr(local, "raw_run", 0)
            size = len(data)
            if run % PROBE_RUN and size > 2 * SAMPLE and self._incompressible_sample(data):
                local.raw_run = run + 1
                return self.sealer.seal_tagged(MODE_RAW, data)
            packed = self._compressor().compress(data)
            # Keep compression only when it saves something worth a decompression.
            if len(packed) < size - size // 64:
                local.raw_run = 0
                return self.sealer.seal_tagged(MODE_ZSTD, packed)
            local.raw_run = run + 1
        return self.sealer.seal_tagged(MODE_RAW, data)

    def _incompressible_sample(self, data: bytes | memoryview) -> bool:
        """Whether a SAMPLE-byte slice from the middle of `data` saves less than 1/32 at
        level 1 (a compressible chunk's slice saves far more; a random one's grows)."""
        middle = (len(data) - SAMPLE) // 2
        sample = memoryview(data)[middle : middle + SAMPLE]
        return len(self._prober().compress(sample)) >= SAMPLE - SAMPLE // 32

    def decode(self, sealed: bytes | memoryview, blob_id: bytes, raw_length: int) -> bytes:
        """Open, decompress and verify a stored blob; DamageError on any mismatch."""
        plain = self.sealer.open_fast(sealed, f"blob {blob_id.hex()[:16]}")
        mode = plain[:1]
        if mode == b"\x00":
            data = bytes(memoryview(plain)[1:])
        elif mode == b"\x01":
            frame = memoryview(plain)[1:]
            try:
                # A frame's claimed size is checked first: decompress() trusts it and would
                # allocate whatever a hostile frame claims.
                if zstandard.frame_content_size(frame) != raw_length:
                    raise DamageError(f"blob {blob_id.hex()[:16]} has the wrong size")
                if raw_length <= ONE_SHOT_LIMIT:
                    # Every real chunk: one-shot decompress is 4x cheaper than a stream, and
                    # allocating the claimed size up front is harmless at this size.
                    data = self._decompressor().decompress(frame)
                else:
                    # decompress() would allocate the claimed size up front (up to 2 GiB an
                    # index entry may claim) even when the frame holds a few bytes; a stream
                    # grows with the output actually produced, capped at the claimed size.
                    stream = self._decompressor().decompressobj()
                    data = stream.decompress(frame)
                    if not stream.eof:
                        raise DamageError(f"blob {blob_id.hex()[:16]} is truncated")
            except zstandard.ZstdError:
                raise DamageError(f"blob {blob_id.hex()[:16]} does not decompress") from None
        else:
            raise DamageError(f"blob {blob_id.hex()[:16]} has an unknown encoding")
        if len(data) != raw_length or self.hash(data) != blob_id:
            raise DamageError(f"blob {blob_id.hex()[:16]} does not match its id")
        return data
