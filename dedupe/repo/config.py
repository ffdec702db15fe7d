"""The `config` object: a plaintext envelope (format version, repository id) and sealed settings."""

from __future__ import annotations

from dataclasses import dataclass

from dedupe import codec
from dedupe.chunker import ChunkerParams
from dedupe.crypto.seal import Sealer
from dedupe.errors import FormatError

DEFAULT_PACK_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Repository-wide parameters fixed at init."""

    repo_id: bytes
    chunker: ChunkerParams
    compression: str
    pack_size: int = DEFAULT_PACK_SIZE


def encode_config(settings: Settings, sealer: Sealer) -> bytes:
    inner = codec.pack(
        {
            "v": codec.FORMAT_VERSION,
            "repo": settings.repo_id,
            "chunk_min": settings.chunker.min_size,
            "chunk_avg": settings.chunker.avg_size,
            "chunk_max": settings.chunker.max_size,
            "compression": settings.compression,
            "pack_size": settings.pack_size,
        }
    )
    return codec.pack(
        {"v": codec.FORMAT_VERSION, "repo": settings.repo_id, "box": sealer.seal(inner)}
    )


def read_envelope(data: bytes) -> tuple[bytes, bytes]:
    """(repo_id, sealed settings); checks the format version before any password is needed."""
    what = "repository config"
    obj = codec.check_version(codec.unpack(data, what), what)
    repo_id = codec.field(obj, "repo", bytes, what)
    if len(repo_id) != 16:
        raise FormatError(f"{what}: malformed repository id")
    return repo_id, codec.field(obj, "box", bytes, what)


def decode_settings(box: bytes, repo_id: bytes, sealer: Sealer) -> Settings:
    what = "repository config"
    obj = codec.check_version(codec.unpack(sealer.open(box, what), what), what)
    if codec.field(obj, "repo", bytes, what) != repo_id:
        raise FormatError(f"{what}: repository id mismatch (tampered config)")
    try:
        params = ChunkerParams(
            codec.field(obj, "chunk_min", int, what),
            codec.field(obj, "chunk_avg", int, what),
            codec.field(obj, "chunk_max", int, what),
        ).validate()
    except ValueError as exc:
        raise FormatError(f"{what}: {exc}") from None
    compression = codec.field(obj, "compression", str, what)
    pack_size = codec.field(obj, "pack_size", int, what)
    if not (1024 * 1024 <= pack_size <= 1024 * 1024 * 1024):
        raise FormatError(f"{what}: implausible pack size")
    return Settings(repo_id, params, compression, pack_size)
