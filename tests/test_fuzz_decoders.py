"""Hostile bytes for every decoder of repository data: only DedupeError, quickly, always.

Three kinds of input per target (targets in tests/fuzz/targets.py): random bytes; byte-level
mutations of a valid object (flips, cuts, insertions); and structured mutations, i.e. valid
msgpack of the right overall shape with one field replaced by a value of the wrong type, a huge
or negative number, deep nesting, or removed. Plus fixed nasty cases: containers claiming 2**32
elements, nesting beyond msgpack's stack, zstd frames claiming gigabytes.
"""

from __future__ import annotations

import os
import struct
import time

import msgpack
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedupe import codec
from dedupe.errors import DedupeError
from tests.fuzz import targets

EXAMPLES = int(os.environ.get("DEDUPE_FUZZ_EXAMPLES", "150"))
TIME_LIMIT = 2.0
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # wall-clock limits are asserted per call; CI machines vary too much
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run(name: str, data: bytes) -> None:
    """Call target `name`; anything but DedupeError (or an overlong call) fails the test."""
    start = time.monotonic()
    try:
        targets.TARGETS[name](data)
    except DedupeError:
        pass
    elapsed = time.monotonic() - start
    assert elapsed < TIME_LIMIT, f"{name} took {elapsed:.1f}s on {len(data)} bytes"


# --- values msgpack can carry ------------------------------------------------------------------

EDGE_INTS = [0, -1, 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 1 << 40]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EDGE_INTS),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=80),
    st.sampled_from(["", ".", "..", "/", "a/b", "zstd:99", "zstd:x", "9999-99-99", "argon2id"]),
    st.sampled_from([b"", b".", b"..", b"/etc/passwd", b"a/b", b"\0", b"x" * 32, b"y" * 16]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=20,
)


def deep(levels: int) -> object:
    value: object = None
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@st.composite
def mutated(draw: st.DrawFn, obj: object) -> object:
    """`obj` with one place (at any depth) replaced, removed, or extended."""
    if isinstance(obj, dict) and obj and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(obj)))
        copy = dict(obj)
        action = draw(st.sampled_from(["replace", "replace", "descend", "delete", "add"]))
        if action == "delete":
            del copy[key]
        elif action == "add":
            copy[draw(st.text(max_size=4))] = draw(values)
        elif action == "descend":
            copy[key] = draw(mutated(copy[key]))
        else:
            copy[key] = draw(st.one_of(values, st.just(deep(draw(st.integers(50, 400))))))
        return copy
    if isinstance(obj, list) and obj and draw(st.integers(0, 3)):
        i = draw(st.integers(0, len(obj) - 1))
        copy = list(obj)
        action = draw(st.sampled_from(["replace", "descend", "descend", "delete", "repeat"]))
        if action == "delete":
            del copy[i]
        elif action == "repeat":
            copy += [copy[i]] * draw(st.integers(1, 3))
        elif action == "descend":
            copy[i] = draw(mutated(copy[i]))
        else:
            copy[i] = draw(values)
        return copy
    return draw(values)


def structured_bases() -> dict[str, object]:
    """Decoded valid objects per target, including the envelopes of stored objects."""
    bases = dict(targets.valid_plain())
    bases["snapshot_sealed"] = bases["snapshot"]
    bases["key_file"] = codec.unpack(targets.seeds("key_file")[0])
    bases["config_envelope"] = codec.unpack(targets.seeds("config_envelope")[0])
    return bases


BASES = structured_bases()


@st.composite
def byte_mutations(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[pos:]
    return bytes(data)


ALL = sorted(targets.TARGETS)


@pytest.mark.parametrize("name", ALL)
@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes(name: str, data: bytes) -> None:
    run(name, data)


@pytest.mark.parametrize("name", ALL)
@FUZZ
@given(data=st.data())
def test_byte_mutations_of_valid_objects(name: str, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(targets.seeds(name)))
    run(name, data.draw(byte_mutations(seed)))


@pytest.mark.parametrize("name", sorted(BASES))
@FUZZ
@given(data=st.data())
def test_structured_mutations(name: str, data: st.DataObject) -> None:
    obj = data.draw(mutated(BASES[name]))
    try:
        encoded = msgpack.packb(obj, use_bin_type=True)
    except (ValueError, OverflowError, TypeError):
        return  # nesting deeper than msgpack can even write: covered by the fixed cases
    run(name, encoded)


def _nasty_inputs() -> list[bytes]:
    frame = zstandard.ZstdCompressor().compress(b"\0" * 4096)
    claims_2gib = (
        b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", 2**31 - 1) + b"\x01\x00\x00"
    )  # single-segment frame header claiming 2 GiB, then an empty last raw block
    return [
        b"\x91" * 100_000 + b"\xc0",  # arrays nested 100k deep
        b"\x81\xa1k" * 50_000 + b"\xc0",  # maps nested 50k deep
        b"\xdd\xff\xff\xff\xff",  # array32 claiming 2**32 - 1 elements
        b"\xdf\xff\xff\xff\xff",  # map32 claiming 2**32 - 1 pairs
        b"\xc6\xff\xff\xff\xff" + b"x" * 10,  # bin32 claiming 4 GiB
        b"\xdb\xff\xff\xff\xff" + b"x" * 10,  # str32 claiming 4 GiB
        b"\x82\xa1v\x01\xa1e\xdd\x00\x10\x00\x00",  # {"v":1,"e": array claiming 1M items}
        struct.pack("<I", 2**31 - 1) + b"\x01" + claims_2gib,
        struct.pack("<I", 2**31 - 1) + b"\x01" + frame,
        struct.pack("<I", 10) + b"\x01" + frame,
        b"\xff\xff\xff\xff",
        b"",
    ]


@pytest.mark.parametrize("name", ALL)
def test_fixed_nasty_inputs(name: str) -> None:
    for data in _nasty_inputs():
        run(name, data)
        run(name, data + b"\xc0" * 8)
