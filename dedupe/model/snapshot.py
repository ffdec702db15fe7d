"""Snapshot manifests (what was backed up, when, from where, the root tree) and hold records.

A hold record (`holds/<snapshot id>`) is a sealed copy of a hold, kept beside the manifest so
that deleting a held manifest, or putting back an older unheld copy of it, cannot silently end
a legal hold: `check` compares the two and `forget` trusts either (`dedupe.repo.manifests`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
    summary: dict[str, Any] = field(default_factory=dict)

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
    summary = _clean_summary(codec.opt_field(obj, "summary", dict, what, {}), what)
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


# Larger than any real count of files or bytes (8 EiB), small enough that sums of many stay exact.
MAX_SUMMARY_VALUE = 2**63 - 1


def _clean_summary(summary: dict[Any, Any], what: str) -> dict[str, Any]:
    """The summary's counters, with impossible values (NaN, infinities, negative or huge
    numbers) left out as if absent.

    Counters only: the CLI does arithmetic on them (sizes, progress totals) and prints them as
    JSON, where NaN is not valid. A value of the wrong type marks the manifest as damaged, as
    before; an impossible number only drops that field, because the summary is informational:
    the snapshot's files (its tree) are intact, and refusing the manifest would make it
    unrestorable and leave `forget` unable to judge it over one bad statistic.
    """
    clean = {}
    for key, value in summary.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise FormatError(f"{what}: malformed summary field {key!r}")
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if not 0 <= value <= MAX_SUMMARY_VALUE:
            continue
        clean[key] = value
    return clean


@dataclass(frozen=True)
class HoldRecord:
    """The sealed record of a hold (`holds/<snapshot id>`), written by `hold`, removed by
    `release`. `held_at` is when the hold was made; `snapshot_time` the held snapshot's time."""

    snapshot_id: str
    reason: str | None
    held_at: datetime
    snapshot_time: datetime


def encode_hold_record(record: HoldRecord) -> bytes:
    return codec.pack(
        {
            "v": codec.FORMAT_VERSION,
            "id": bytes.fromhex(record.snapshot_id),
            "reason": record.reason,
            "time": record.held_at.isoformat(),
            "snapshot_time": record.snapshot_time.isoformat(),
        }
    )


def decode_hold_record(data: bytes, expected_id: str) -> HoldRecord:
    what = f"hold record {expected_id[:8]}"
    obj = codec.check_version(codec.unpack(data, what), what)
    sid = codec.blob_id(codec.field(obj, "id", bytes, what), what).hex()
    if sid != expected_id:
        raise FormatError(f"{what}: record id does not match its name (tampered)")
    times = []
    for key in ("time", "snapshot_time"):
        try:
            moment = datetime.fromisoformat(codec.field(obj, key, str, what))
        except ValueError:
            raise FormatError(f"{what}: malformed {key}") from None
        if moment.tzinfo is None:
            raise FormatError(f"{what}: {key} without a time zone")
        times.append(moment)
    return HoldRecord(sid, codec.opt_field(obj, "reason", str, what), times[0], times[1])
