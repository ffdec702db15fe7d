"""Fuzz targets: every decoder that reads repository bytes, each taking one bytes input.

Shared by the hypothesis tests (tests/test_fuzz_decoders.py) and the atheris harnesses
(tests/fuzz/fuzz_<target>.py). A target may raise only `dedupe.errors.DedupeError`; anything
else is a bug. Targets named `*_sealed` seal the fuzzed plaintext with the fixed test key, so the
parser behind the MAC is exercised (as by an attacker who knows the password); the others feed
the bytes as stored, so the envelope and the MAC check are exercised.

Targets also touch what consumers do with a decoded value (a lock's description, a snapshot's
summary, a tree node's times and ids), so a value that decodes but breaks its user counts too.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from datetime import UTC

import zstandard

from dedupe import codec
from dedupe.chunker import Chunker, ChunkerParams
from dedupe.crypto import export, kdf, keys
from dedupe.crypto.seal import IdHasher, Sealer
from dedupe.model import snapshot as snapshot_mod
from dedupe.model import tree as tree_mod
from dedupe.repo import config, index, lock, pack
from dedupe.repo.blob import BlobCodec
from dedupe.repo.repository import Repository
from dedupe.storage.memory import MemoryStorage
from tests.support import CHEAP_KDF

ENC_KEY = bytes(range(32))
ID_KEY = bytes(range(32, 64))
REPO_ID = bytes(range(16))
SEALER = Sealer(ENC_KEY)
HASH = IdHasher(ID_KEY)
MASTER = keys.MasterKey(REPO_ID, ENC_KEY, ID_KEY, 12345)
PASSWORD = b"fuzz password"
SALT = bytes(16)
WRAPPING = kdf.derive(PASSWORD, SALT, CHEAP_KDF)
SNAP_ID = "ab" * 32
BLOBS = BlobCodec(SEALER, HASH, 3)


def key_file(data: bytes) -> None:
    parsed = keys.decode_key_file(data)
    if parsed.params == CHEAP_KDF:  # unlocking with costlier (valid) parameters is only slow
        parsed.unlock(PASSWORD)


def key_file_sealed(data: bytes) -> None:
    master = keys.KeyFile(SALT, CHEAP_KDF, Sealer(WRAPPING).seal(data)).unlock(PASSWORD)
    master.sealer()
    master.id_hasher()(b"x")


def config_envelope(data: bytes) -> None:
    repo_id, box = config.read_envelope(data)
    config.decode_settings(box, repo_id, SEALER)


def config_sealed(data: bytes) -> None:
    settings = config.decode_settings(SEALER.seal(data), REPO_ID, SEALER)
    Repository(MemoryStorage(), MASTER, settings, "keys/0")
    Chunker(settings.chunker, MASTER.chunker_seed)


def pack_file(data: bytes) -> None:
    offset, length = pack.header_span(len(data), data[-4:])
    pack.decode_header(data[offset : offset + length], SEALER, len(data))


def pack_header_sealed(data: bytes) -> None:
    sealed = SEALER.seal(data)
    # A pack of plausible size around the header: entries are bounded by its data area.
    size = 1 << 20
    for entry in pack.decode_header(sealed, SEALER, size + len(sealed) + 4):
        assert entry.offset + entry.length <= size


def index_file(data: bytes) -> None:
    index.decode_index(data, SEALER, "fuzz")


def index_sealed(data: bytes) -> None:
    decoded = index.decode_index(SEALER.seal(data), SEALER, "fuzz")
    table = index.ChunkIndex()
    for pack_id, entries in decoded.packs:
        table.add_pack(pack_id, entries)
    list(table.items())


def tree(data: bytes) -> None:
    for node in tree_mod.decode_tree(data):
        # Restore passes these to os.utime/os.fchown: they must be in the kernel's ranges.
        assert -(2**63) <= node.mtime_ns < 2**63
        assert 0 <= node.uid < 2**32 and 0 <= node.gid < 2**32
        assert 0 <= node.size < 2**63
        assert tree_mod.valid_name(node.name)


def snapshot(data: bytes) -> None:
    snap = snapshot_mod.decode_snapshot(data, SNAP_ID)
    snap.display_paths()
    snap.time.isoformat()
    snap.time.astimezone(UTC)
    for value in snap.summary.values():
        assert isinstance(value, int | float) and not isinstance(value, bool)
    snapshot_mod.encode_snapshot(snap)


def snapshot_sealed(data: bytes) -> None:
    snapshot(SEALER.open(SEALER.seal(data)))


def lock_sealed(data: bytes) -> None:
    info = lock.decode_lock("locks/fuzz", SEALER.seal(data), SEALER)
    info.describe()
    info.is_stale(1.7e9, "fuzz-host")
    info.is_stale(1.7e9, info.host)


def lock_object(data: bytes) -> None:
    lock.decode_lock("locks/fuzz", data, SEALER)


def blob(data: bytes) -> None:
    """First 4 bytes: the raw length the index claims; the rest: the sealed plaintext."""
    raw_length = struct.unpack("<I", data[:4].ljust(4, b"\0"))[0] & 0x7FFFFFFF
    plain = data[4:]
    BLOBS.decode(SEALER.seal(plain), HASH(plain[1:]), raw_length)


def blob_stored(data: bytes) -> None:
    BLOBS.decode(data, HASH(data), len(data))


def key_export(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    export.decode_any(text)


def key_export_payload(data: bytes) -> None:
    # Past the armour: a well-formed file around fuzzed payload bytes.
    payload = data + export.content_hash(data)[:8]
    armored = base64.b64encode(payload).decode()
    export.decode_file(f"{export.BEGIN}\n{armored}\n{export.END}\n")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "key_file": key_file,
    "key_file_sealed": key_file_sealed,
    "config_envelope": config_envelope,
    "config_sealed": config_sealed,
    "pack_file": pack_file,
    "pack_header_sealed": pack_header_sealed,
    "index_file": index_file,
    "index_sealed": index_sealed,
    "tree": tree,
    "snapshot": snapshot,
    "snapshot_sealed": snapshot_sealed,
    "lock_object": lock_object,
    "lock_sealed": lock_sealed,
    "blob": blob,
    "blob_stored": blob_stored,
    "key_export": key_export,
    "key_export_payload": key_export_payload,
}


# --- valid objects: seeds for atheris and the base of hypothesis's structured mutations -------


def valid_plain() -> dict[str, object]:
    """A valid decoded (msgpack-level) object for each structured target."""
    blob_id = HASH(b"chunk")
    return {
        "key_file_sealed": {"v": 1, "repo": REPO_ID, "enc": ENC_KEY, "id": ID_KEY, "seed": 7},
        "config_sealed": {
            "v": 1,
            "repo": REPO_ID,
            "chunk_min": 16384,
            "chunk_avg": 65536,
            "chunk_max": 262144,
            "compression": "zstd:3",
            "pack_size": 16 << 20,
        },
        "pack_header_sealed": {"v": 1, "blobs": [[blob_id, 0, 100, 60], [HASH(b"b"), 100, 50, 9]]},
        "index_sealed": {
            "v": 1,
            "packs": [[HASH(b"pack"), [[blob_id, 0, 100, 60]]]],
            "supersedes": ["0" * 64],
        },
        "tree": {
            "v": 1,
            "e": [
                {
                    "n": b"a.txt",
                    "t": "f",
                    "m": 0o644,
                    "mt": 10**18,
                    "u": 0,
                    "g": 0,
                    "s": 5,
                    "c": [blob_id],
                },
                {
                    "n": b"dir",
                    "t": "d",
                    "m": 0o755,
                    "mt": 0,
                    "u": 1000,
                    "g": 1000,
                    "un": "alice",
                    "gn": "staff",
                    "st": HASH(b"sub"),
                },
                {"n": b"link", "t": "l", "m": 0o777, "mt": -5, "u": 0, "g": 0, "lt": b"../x"},
            ],
        },
        "snapshot": {
            "v": 1,
            "id": bytes.fromhex(SNAP_ID),
            "time": "2026-03-31T22:00:00+02:00",
            "host": "frontdesk",
            "user": "root",
            "paths": [b"/srv/data"],
            "tags": ["nightly"],
            "tree": blob_id,
            "held": False,
            "hold_reason": None,
            "summary": {"files": 3, "bytes_total": 1000},
        },
        "lock_sealed": {
            "v": 1,
            "host": "fuzz-host",
            "pid": 1,
            "pid_start": 5,
            "time": 1.7e9,
            "exclusive": True,
        },
        "key_export_payload": {
            "v": 1,
            "kind": export.KIND,
            "repo": REPO_ID,
            "key": keys.encode_key_file(MASTER, PASSWORD, CHEAP_KDF),
        },
    }


def seeds(target: str) -> list[bytes]:
    """Valid inputs for `target` (a fuzzer mutates from them)."""
    plain = {k: codec.pack(v) for k, v in valid_plain().items()}
    plain["snapshot_sealed"] = plain["snapshot"]
    key_bytes = keys.encode_key_file(MASTER, PASSWORD, CHEAP_KDF)
    exported = export.KeyExport(REPO_ID, key_bytes)
    builder = pack.PackBuilder()
    builder.add(HASH(b"chunk"), BLOBS.encode(b"chunk"), 5)
    _pack_id, pack_bytes = builder.finish(SEALER)
    stored = {
        "key_file": [key_bytes],
        "config_envelope": [
            config.encode_config(
                config.Settings(REPO_ID, ChunkerParams.for_average(65536), "zstd:3"), SEALER
            )
        ],
        "pack_file": [pack_bytes],
        "index_file": [index.encode_index([(HASH(b"p"), builder.entries)], [], SEALER)],
        "lock_object": [SEALER.seal(plain["lock_sealed"])],
        "blob": [
            struct.pack("<I", 5) + b"\x00chunk",
            struct.pack("<I", 1000) + b"\x01" + zstandard.ZstdCompressor().compress(b"z" * 1000),
        ],
        "blob_stored": [BLOBS.encode(b"chunk")],
        "key_export": [
            export.encode_file(exported).encode(),
            export.encode_paper(exported).encode(),
        ],
    }
    if target == "tree":  # format 1 (the map) and format 2 (columns in a zstd frame)
        return [plain["tree"], tree_mod.encode_tree(tree_mod.decode_tree(plain["tree"]))]
    if target in stored:
        return stored[target]
    return [plain[target]]
