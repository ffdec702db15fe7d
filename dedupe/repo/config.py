"""The `config` object: a plaintext envelope (format version, repository id) and sealed settings.

The settings hold two chunker parameter sets (docs/FORMAT-chunking.md): `chunker` for files, and
`stream_chunker` for streams (stdin, `--stdin-from-command`: database dumps), whose scattered
row changes want small chunks. A repository made before the stream set existed has none
(`stream_chunker` is None) and chunks streams with its one set, as it always did; a new one gets
`DEFAULT_STREAM_AVG`. The stream set is three optional fields of the sealed settings: an older
dedupe ignores them and stays correct (it only chunks streams with the file set), so the format
version is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dedupe import codec
from dedupe.chunker import DEFAULT_STREAM_AVG, ChunkerParams
from dedupe.crypto.seal import Sealer
from dedupe.errors import FormatError

DEFAULT_PACK_SIZE = 16 * 1024 * 1024
# The stream set's fields in the sealed settings: all three or none.
STREAM_FIELDS = ("stream_chunk_min", "stream_chunk_avg", "stream_chunk_max")


def default_stream_chunker() -> ChunkerParams:
    """The stream set a new repository gets."""
    return ChunkerParams.for_average(DEFAULT_STREAM_AVG)


@dataclass(frozen=True)
class Settings:
    """Repository-wide parameters fixed at init. `stream_chunker` is None in a repository made
    before streams had their own set; `stream_params` is what a stream is cut with."""

    repo_id: bytes
    chunker: ChunkerParams
    compression: str
    pack_size: int = DEFAULT_PACK_SIZE
    stream_chunker: ChunkerParams | None = field(default_factory=default_stream_chunker)

    @property
    def stream_params(self) -> ChunkerParams:
        """The chunker parameters for a stream: the stream set, or the one set of an older
        repository (so its nightly dumps keep deduplicating against the earlier ones)."""
        return self.stream_chunker if self.stream_chunker is not None else self.chunker


def encode_config(settings: Settings, sealer: Sealer) -> bytes:
    fields = {
        "v": codec.FORMAT_VERSION,
        "repo": settings.repo_id,
        "chunk_min": settings.chunker.min_size,
        "chunk_avg": settings.chunker.avg_size,
        "chunk_max": settings.chunker.max_size,
        "compression": settings.compression,
        "pack_size": settings.pack_size,
    }
    stream = settings.stream_chunker
    if stream is not None:  # absent, not nil, in an older repository's settings
        fields |= {
            "stream_chunk_min": stream.min_size,
            "stream_chunk_avg": stream.avg_size,
            "stream_chunk_max": stream.max_size,
        }
    inner = codec.pack(fields)
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
    params = _chunker_params(obj, "chunk_", what)
    stream = None
    if any(key in obj for key in STREAM_FIELDS):
        stream = _chunker_params(obj, "stream_chunk_", what)
    compression = codec.field(obj, "compression", str, what)
    pack_size = codec.field(obj, "pack_size", int, what)
    if not (1024 * 1024 <= pack_size <= 1024 * 1024 * 1024):
        raise FormatError(f"{what}: implausible pack size")
    return Settings(repo_id, params, compression, pack_size, stream)


def _chunker_params(obj: dict[str, object], prefix: str, what: str) -> ChunkerParams:
    """One chunker parameter set (`chunk_min`, `chunk_avg`, `chunk_max` under `prefix`),
    all three present and valid, else FormatError."""
    try:
        return ChunkerParams(
            codec.field(obj, f"{prefix}min", int, what),
            codec.field(obj, f"{prefix}avg", int, what),
            codec.field(obj, f"{prefix}max", int, what),
        ).validate()
    except ValueError as exc:
        raise FormatError(f"{what}: {exc}") from None


def carried(settings: Settings, template: Settings) -> Settings:
    """`settings` of a new repository made from `template` (`init --same-key-as`,
    `--copy-chunker-params-from`): both chunker sets and the pack size are the template's, so
    both repositories cut files and streams at the same places and `copy` between them moves
    only what the other lacks. An older template without a stream set gives none."""
    return Settings(
        settings.repo_id,
        template.chunker,
        settings.compression,
        template.pack_size,
        template.stream_chunker,
    )
