"""Unit tests of the compact chunk index and index-file codec."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dedupe import codec
from dedupe.crypto.seal import Sealer
from dedupe.errors import DamageError
from dedupe.repo.index import ChunkIndex, Generation, decode_index, encode_index
from dedupe.repo.pack import BlobEntry


def test_add_lookup_merge_and_first_entry_wins():
    index = ChunkIndex()
    ids = [os.urandom(32) for _ in range(3000)]
    index.add_pack(b"A" * 32, [BlobEntry(i, n * 100, 50 + n, 7) for n, i in enumerate(ids[:1000])])
    index.merge()
    index.add_pack(b"B" * 32, [BlobEntry(i, 1, 99, 1) for i in ids[500:2000]])
    assert len(index) == 2000
    index.merge()
    assert len(index) == 2000
    loc = index.lookup(ids[700])
    assert (loc.pack_id, loc.offset, loc.length) == (b"A" * 32, 70000, 750)
    assert index.lookup(ids[1500]).pack_id == b"B" * 32
    assert ids[2500] not in index and index.lookup(ids[2500]) is None
    assert {i for i, _ in index.items()} == set(ids[:2000])


def test_equal_prefixes_are_told_apart():
    index = ChunkIndex()
    same = [b"\x07" * 8 + os.urandom(24) for _ in range(5)]
    index.add_pack(b"P" * 32, [BlobEntry(i, n, 41 + n, n) for n, i in enumerate(same[:3])])
    index.merge()
    index.add_bulk(b"Q" * 32, b"".join(same[2:]), np.array([[9, 90, 9]] * 3, dtype=np.uint32))
    assert len(index) == 5
    assert [index.lookup(i).length for i in same] == [41, 42, 43, 90, 90]
    assert b"\x07" * 8 + b"\x00" * 24 not in index


def test_index_file_round_trip_and_tamper():
    sealer = Sealer(b"s" * 32)
    packs = [(os.urandom(32), [BlobEntry(os.urandom(32), 0, 100, 200)])]
    data = encode_index(packs, ["ab" * 32], sealer)
    decoded = decode_index(data, sealer, "x")
    assert decoded.packs == packs and decoded.supersedes == ["ab" * 32]
    with pytest.raises(DamageError):
        decode_index(data[:-1] + bytes([data[-1] ^ 1]), sealer, "x")


def test_old_format_index_file_without_generation_reads_as_generation_zero():
    """Index files written before generations existed have no `gen` or `floor` key."""
    sealer = Sealer(b"s" * 32)
    pack_id, blob_id = os.urandom(32), os.urandom(32)
    fields = np.array([[0, 100, 200]], dtype="<u4").tobytes()
    old = {"v": 1, "packs": [[pack_id, blob_id, fields]], "supersedes": []}
    decoded = decode_index(sealer.seal(codec.pack(old)), sealer, "old")
    assert (decoded.gen, decoded.floor) == (0, 0)
    assert decoded.packs == [(pack_id, [BlobEntry(blob_id, 0, 100, 200)])]
    new = decode_index(encode_index(decoded.packs, [], sealer, gen=3, floor=2), sealer, "new")
    assert (new.gen, new.floor, new.generation) == (3, 2, Generation(3, 2, ()))
    for bad in ({"gen": 1, "floor": 2}, {"gen": -1}, {"gen": "1"}, {"floor": True}):
        with pytest.raises(DamageError):
            decode_index(sealer.seal(codec.pack(old | bad)), sealer, "bad")
