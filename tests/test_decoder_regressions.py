"""Regression tests for the crashes fuzzing found in the decoders (each fixed in its decoder).

1. snapshot summary with a non-number value: `snapshots` formatted it as a size (TypeError).
2. tree node with mtime >= 2**63 or uid/gid >= 2**32: restore's utime/chown raised OverflowError.
3. lock with time 1e300 or NaN: `describe` (shown when the repository is locked) raised.
4. blob whose index entry and zstd frame both claim 2 GiB but hold a few bytes: decompress()
   allocated the claimed size up front (MemoryError under a memory limit).
5. index entry with offset >= 2**32: the compact index's 32-bit fields overflowed.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys

import pytest

from dedupe import codec
from dedupe.errors import DamageError, FormatError
from dedupe.model.snapshot import decode_snapshot
from dedupe.model.tree import decode_tree
from dedupe.repo.index import decode_index
from dedupe.repo.lock import decode_lock
from tests.clitools import ROOT
from tests.fuzz import targets


def test_snapshot_summary_must_hold_numbers():
    manifest = dict(targets.valid_plain()["snapshot"])
    manifest["summary"] = {"bytes_total": "lots"}
    with pytest.raises(FormatError):
        decode_snapshot(codec.pack(manifest), targets.SNAP_ID)
    manifest["summary"] = {"bytes_total": True}
    with pytest.raises(FormatError):
        decode_snapshot(codec.pack(manifest), targets.SNAP_ID)
    manifest["summary"] = {"bytes_total": 10, "ratio": 0.5}
    assert decode_snapshot(codec.pack(manifest), targets.SNAP_ID).summary["bytes_total"] == 10


@pytest.mark.parametrize("field,value", [("mt", 2**63), ("u", 2**32), ("g", -1), ("s", 2**63)])
def test_tree_fields_out_of_kernel_range(field, value):
    tree = targets.valid_plain()["tree"]
    entry = dict(tree["e"][0])
    entry[field] = value
    with pytest.raises(FormatError):
        decode_tree(codec.pack({"v": 1, "e": [entry]}))


@pytest.mark.parametrize("when", [1e300, math.nan, math.inf, -1.0])
def test_lock_time_out_of_range(when):
    lock = dict(targets.valid_plain()["lock_sealed"])
    lock["time"] = when
    with pytest.raises(FormatError):
        decode_lock("locks/x", targets.SEALER.seal(codec.pack(lock)), targets.SEALER)
    lock["time"] = 1.7e9
    info = decode_lock("locks/x", targets.SEALER.seal(codec.pack(lock)), targets.SEALER)
    assert "exclusive lock" in info.describe()


def test_index_entry_offset_beyond_32_bits():
    obj = targets.valid_plain()["index_sealed"]
    obj["packs"][0][1][0][1] = 2**40
    with pytest.raises(FormatError):
        decode_index(targets.SEALER.seal(codec.pack(obj)), targets.SEALER, "x")


ZSTD_CLAIMS_2GIB = b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", 2**31 - 1) + b"\x01\x00\x00"


def test_zstd_frame_claiming_gigabytes_fails_without_allocating_them():
    code = f"""
import resource, sys
sys.path.insert(0, {ROOT!r})
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from tests.fuzz import targets
from dedupe.errors import DamageError
sealed = targets.SEALER.seal(b"\\x01" + {ZSTD_CLAIMS_2GIB!r})
try:
    targets.BLOBS.decode(sealed, bytes(32), 2**31 - 1)
except DamageError as exc:
    print("damage:", exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("damage:")


def test_zstd_frame_claiming_more_than_index_says():
    sealed = targets.SEALER.seal(b"\x01" + ZSTD_CLAIMS_2GIB)
    with pytest.raises(DamageError, match="wrong size"):
        targets.BLOBS.decode(sealed, bytes(32), 100)
