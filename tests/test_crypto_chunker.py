"""Unit tests: key files, sealing, keyed ids, blob codec, chunker."""

from __future__ import annotations

import io
import random

import pytest
from pyfastcdc import FastCDC

from dedupe.chunker import POOL_BUFFERS, Chunker, ChunkerParams
from dedupe.crypto import keys
from dedupe.crypto.seal import IdHasher, Sealer
from dedupe.errors import DamageError, FormatError, WrongPassword
from dedupe.repo.blob import BlobCodec, parse_compression
from tests.support import CHEAP_KDF


def test_key_file_round_trip_and_wrong_password():
    master = keys.MasterKey.generate(b"r" * 16)
    data = keys.encode_key_file(master, b"pw", CHEAP_KDF)
    key_file = keys.decode_key_file(data)
    assert key_file.unlock(b"pw") == master
    with pytest.raises(WrongPassword):
        key_file.unlock(b"pw2")
    assert b"pw" not in data.replace(b"pwhash", b"")
    assert master.enc_key not in data and master.id_key not in data
    assert "enc" not in repr(master) and master.enc_key.hex() not in repr(master)


def test_key_file_refuses_hostile_kdf_parameters():
    master = keys.MasterKey.generate(b"r" * 16)
    data = keys.encode_key_file(master, b"pw", CHEAP_KDF)
    import msgpack

    obj = msgpack.unpackb(data)
    obj["mem"] = 1 << 40
    with pytest.raises(FormatError):
        keys.decode_key_file(msgpack.packb(obj))
    obj["mem"] = CHEAP_KDF.mem
    obj["ops"] = 10**9
    with pytest.raises(FormatError):
        keys.decode_key_file(msgpack.packb(obj))


def test_sealer_detects_any_flipped_byte():
    sealer = Sealer(b"k" * 32)
    sealed = sealer.seal(b"patient record")
    assert sealer.open(sealed) == b"patient record"
    assert sealer.seal(b"x") != sealer.seal(b"x")  # random nonces
    for i in range(len(sealed)):
        broken = bytearray(sealed)
        broken[i] ^= 0x01
        with pytest.raises(DamageError):
            sealer.open(bytes(broken))
    with pytest.raises(DamageError):
        Sealer(b"j" * 32).open(sealed)


def test_keyed_ids_depend_on_key():
    assert IdHasher(b"a" * 32)(b"data") != IdHasher(b"b" * 32)(b"data")
    assert len(IdHasher(b"a" * 32)(b"data")) == 32


def test_blob_codec_compresses_verifies_and_rejects_swaps():
    codec = BlobCodec(Sealer(b"k" * 32), IdHasher(b"i" * 32), 3)
    text = b"INSERT INTO visits VALUES (1, 'checkup');\n" * 2000
    noise = random.Random(1).randbytes(50_000)
    sealed_text = codec.encode(text)
    sealed_noise = codec.encode(noise)
    assert len(sealed_text) < len(text) // 10
    assert len(sealed_noise) <= len(noise) + 41  # stored raw: no growth beyond the seal
    tid, nid = codec.hash(text), codec.hash(noise)
    assert codec.decode(sealed_text, tid, len(text)) == text
    assert codec.decode(sealed_noise, nid, len(noise)) == noise
    with pytest.raises(DamageError):
        codec.decode(sealed_noise, tid, len(noise))  # right MAC, wrong id: damage
    with pytest.raises(DamageError):
        codec.decode(sealed_text, tid, len(text) + 1)


def test_parse_compression():
    assert parse_compression("none") == 0
    assert parse_compression("zstd") == 3
    assert parse_compression("zstd:19") == 19
    for bad in ("zstd:0", "gzip", "zstd:x"):
        with pytest.raises(ValueError):
            parse_compression(bad)


def test_chunker_blocks_match_one_continuous_pass(monkeypatch):
    import dedupe.chunker as chunker_mod

    monkeypatch.setattr(chunker_mod, "BLOCK_SIZE", 300_000)  # many block boundaries
    params = ChunkerParams.for_average(16 * 1024)
    data = random.Random(2).randbytes(3_000_000)
    chunks = [bytes(c) for c in Chunker(params, 42).chunks(io.BytesIO(data).readinto)]
    reference = FastCDC(
        params.avg_size, min_size=params.min_size, max_size=params.max_size, seed=42
    ).cut_buf(data)
    assert chunks == [bytes(c.data) for c in reference]
    assert b"".join(chunks) == data


def test_chunker_seed_changes_boundaries():
    params = ChunkerParams.for_average(16 * 1024)
    data = random.Random(3).randbytes(1_000_000)
    a = [len(c) for c in Chunker(params, 1).chunks(io.BytesIO(data).readinto)]
    b = [len(c) for c in Chunker(params, 2).chunks(io.BytesIO(data).readinto)]
    assert a != b
    assert all(params.min_size <= n <= params.max_size for n in a[:-1])


def test_chunker_small_and_empty_inputs():
    chunker = Chunker(ChunkerParams.for_average(64 * 1024), 5)
    assert [bytes(c) for c in chunker.chunks(io.BytesIO(b"abc").readinto, 3)] == [b"abc"]
    assert list(chunker.chunks(io.BytesIO(b"").readinto, 0)) == []


@pytest.mark.parametrize("size", [0, 1, 1000, 300_000])
def test_seal_tagged_and_open_fast_match_the_plain_forms(size):
    sealer = Sealer(bytes(range(32)))
    payload = random.Random(size).randbytes(size)
    sealed = sealer.seal_tagged(1, memoryview(payload))
    assert sealer.open(bytes(sealed)) == b"\x01" + payload
    assert sealer.open_fast(memoryview(bytes(sealed))) == b"\x01" + payload
    assert sealer.open_fast(sealer.seal(b"\x00" + payload)) == b"\x00" + payload
    for flip in (0, 24, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[flip] ^= 1
        with pytest.raises(DamageError):
            sealer.open_fast(memoryview(bad))
    with pytest.raises(DamageError):
        sealer.open_fast(bytes(sealed[:39]))


def test_chunker_reuses_block_buffers_only_when_no_chunk_is_held(monkeypatch):
    """Chunks kept by a consumer keep their bytes while later blocks reuse other buffers."""
    monkeypatch.setattr("dedupe.chunker.BLOCK_SIZE", 2 << 20)
    chunker = Chunker(ChunkerParams.for_average(64 * 1024), seed=7)
    data = random.Random(3).randbytes(40 << 20)
    kept = []
    seen = 0
    for block in chunker.blocks(io.BytesIO(data).readinto, len(data)):
        for chunk in block:
            if len(kept) < 30:
                kept.append((seen, chunk))  # hold views of the first blocks to the end
            seen += len(chunk)
    assert seen == len(data)
    for offset, chunk in kept:
        assert bytes(chunk) == data[offset : offset + len(chunk)]
    pooled = chunker._pool._buffers
    assert 1 <= len(pooled) <= 4  # buffers were reused, not one per block (20 blocks)
    # The same chunking twice over reused buffers gives identical chunks.
    first = [bytes(c) for c in chunker.chunks(io.BytesIO(data).readinto, len(data))]
    again = [bytes(c) for c in chunker.chunks(io.BytesIO(data).readinto, None)]
    assert first == again and b"".join(first) == data


def test_chunks_of_fresh_blocks_stay_valid_when_every_pooled_buffer_is_held(monkeypatch):
    """A consumer holding a chunk of every block keeps all pooled buffers busy: later blocks
    come from fresh kernel-zeroed maps, and every held chunk keeps its bytes."""
    monkeypatch.setattr("dedupe.chunker.BLOCK_SIZE", 2 << 20)
    chunker = Chunker(ChunkerParams.for_average(64 * 1024), seed=9)
    data = random.Random(4).randbytes(24 << 20)
    held = []
    seen = 0
    for block in chunker.blocks(io.BytesIO(data).readinto, None):
        held.append((seen, block[0]))  # one chunk of every block: its buffer stays in use
        seen += sum(len(c) for c in block)
    assert seen == len(data) and len(held) >= 10
    # The pool is full; the other blocks were fresh.
    assert len(chunker._pool._buffers) == POOL_BUFFERS
    for offset, chunk in held:
        assert bytes(chunk) == data[offset : offset + len(chunk)]
    del held
    # With the views gone, the pooled buffers are free again and reused.
    again = [bytes(c) for c in chunker.chunks(io.BytesIO(data).readinto, len(data))]
    assert b"".join(again) == data and len(chunker._pool._buffers) == POOL_BUFFERS
