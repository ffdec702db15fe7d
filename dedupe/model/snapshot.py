"""Snapshot manifests: what was backed up, when, from where, and the root tree."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

from dedupe import codec
from dedupe.errors import FormatError


@dataclass(frozen=True)
class Snapshot:
    """One backup. `paths` are the absolute source paths (bytes); `tree` is the root tree id."""

    id: str
    time: datetime
    host: str
    user: str
    paths: tuple[bytes, ...]
    tags: tuple[str, ...]
    tree: bytes
    held: bool = False
    hold_reason: str | None = None
    summary: dict = field(default_factory=dict)

    def short_id(self) -> str:
        return self.id[:8]

    def display_paths(self) -> list[str]:
        return [p.decode("utf-8", "surrogateescape") for p in self.paths]

    def with_hold(self, held: bool, reason: str | None) -> Snapshot:
        return dataclasses.replace(self, held=held, hold_reason=reason if held else None)


def encode_snapshot(s: Snapshot) -> bytes:
    return codec.pack(
        {
            "v": codec.FORMAT_VERSION,
            "id": bytes.fromhex(s.id),
            "time": s.time.isoformat(),
            "host": s.host,
            "user": s.user,
            "paths": list(s.paths),
            "tags": list(s.tags),
            "tree": s.tree,
            "held": s.held,
            "hold_reason": s.hold_reason,
            "summary": s.summary,
        }
    )


def decode_snapshot(data: bytes, expected_id: str) -> Snapshot:
    what = f"snapshot {expected_id[:8]}"
    obj = codec.check_version(codec.unpack(data, what), what)
    sid = codec.blob_id(codec.field(obj, "id", bytes, what), what).hex()
    if sid != expected_id:
        raise FormatError(f"{what}: manifest id does not match its name (tampered)")
    try:
        when = datetime.fromisoformat(codec.field(obj, "time", str, what))
    except ValueError:
        raise FormatError(f"{what}: malformed time") from None
    if when.tzinfo is None:
        raise FormatError(f"{what}: time without a time zone")
    paths = codec.field(obj, "paths", list, what)
    tags = codec.field(obj, "tags", list, what)
    if not all(isinstance(p, bytes) for p in paths) or not all(isinstance(t, str) for t in tags):
        raise FormatError(f"{what}: malformed paths or tags")
    summary = codec.opt_field(obj, "summary", dict, what, {})
    # Counters only: the CLI does arithmetic on them (sizes, progress totals).
    for key, value in summary.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise FormatError(f"{what}: malformed summary field {key!r}")
    return Snapshot(
        id=sid,
        time=when,
        host=codec.field(obj, "host", str, what),
        user=codec.field(obj, "user", str, what),
        paths=tuple(paths),
        tags=tuple(tags),
        tree=codec.blob_id(codec.field(obj, "tree", bytes, what), what),
        held=codec.field(obj, "held", bool, what),
        hold_reason=codec.opt_field(obj, "hold_reason", str, what),
        summary=summary,
    )
