"""BlobCodec's shortcut for incompressible runs (dedupe.repo.blob): chunks after one that did not
compress are judged by a sample; what is stored still decodes to the same bytes, compressible
chunks are still stored compressed (byte for byte as without the shortcut), and a run of
incompressible chunks gets a full compression every PROBE_RUN-th chunk."""

from __future__ import annotations

import os
import random

from dedupe.crypto.seal import OVERHEAD, IdHasher, Sealer
from dedupe.repo.blob import MODE_RAW, MODE_ZSTD, PROBE_RUN, SAMPLE, BlobCodec

KEY = bytes(range(32))


def _codec() -> BlobCodec:
    return BlobCodec(Sealer(KEY), IdHasher(KEY[::-1]), 3)


def _mode(codec: BlobCodec, sealed: bytes | bytearray) -> int:
    return codec.sealer.open_fast(sealed)[0]


def _text(rng: random.Random, size: int) -> bytes:
    words = [b"patient", b"invoice", b"appointment", b"paid", b"2024-05-01", b"Dr. Meier"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def test_mixed_chunks_round_trip_and_compressible_ones_stay_compressed() -> None:
    rng = random.Random(7)
    codec, reference = _codec(), _codec()
    # Random runs longer than PROBE_RUN, text in between and a chunk whose middle is random
    # but whose whole repeats one block (the sample cannot see that it compresses).
    block = os.urandom(SAMPLE * 2)
    chunks = [os.urandom(65536) for _ in range(PROBE_RUN + 3)]
    chunks += [_text(rng, 65536), block * 8]
    chunks += [os.urandom(20000) for _ in range(3)] + [_text(rng, 30000), b"", b"x" * 100]
    for chunk in chunks:
        sealed = codec.encode(chunk)
        blob_id = codec.hash(chunk)
        assert codec.decode(sealed, blob_id, len(chunk)) == chunk
        if _mode(codec, sealed) == MODE_ZSTD:  # as a codec that always compresses stores it
            assert len(sealed) == len(reference.encode(chunk))
        if chunk[:7] in (b"patient", b"invoice", b"appoint", b"paid 20", b"2024-05", b"Dr. Mei"):
            assert _mode(codec, sealed) == MODE_ZSTD  # text stays compressed after a raw run
    text_after_run = chunks[PROBE_RUN + 3]
    assert _mode(codec, codec.encode(os.urandom(65536))) == MODE_RAW
    assert _mode(codec, codec.encode(text_after_run)) == MODE_ZSTD


def test_random_chunks_are_stored_raw_with_no_growth_but_the_seal() -> None:
    codec = _codec()
    for _ in range(3 * PROBE_RUN):
        chunk = os.urandom(65536)
        sealed = codec.encode(chunk)
        assert len(sealed) == len(chunk) + OVERHEAD + 1
        assert _mode(codec, sealed) == MODE_RAW


def test_a_run_gets_a_full_compression_every_probe_run_chunks() -> None:
    """A chunk whose sample looks random but which repeats one block is stored compressed
    at the latest PROBE_RUN chunks into a run of raw chunks."""
    codec = _codec()
    codec.encode(os.urandom(65536))  # the run starts
    repeated = os.urandom(SAMPLE * 2) * 8
    modes = [_mode(codec, codec.encode(repeated)) for _ in range(PROBE_RUN)]
    assert modes[-1] == MODE_ZSTD
    assert _mode(codec, codec.encode(repeated)) == MODE_ZSTD  # the run has ended
