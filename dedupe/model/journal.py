"""Retention journal entries: what was done to a repository, when, by whom, and why.

An entry is a frozen value with a strict decoder (a hostile or damaged entry is a `FormatError`,
never a crash). Where entries are stored, how they chain and how they are appended is
`dedupe.repo.journal`; the format is docs/FORMAT.md, "The retention journal".

What an entry's `action` does to the repository's expected state (`effects`, which `check`
replays against the manifests and hold records):
- `snapshot`: its snapshots now exist;
- `forget`: its snapshots no longer exist;
- `hold` / `release`: its snapshots are held with `why` as the reason / no longer held;
- `copy` / `archive` with `direction` "in": its snapshots now exist here (held when the
  reference says `held`); "out": nothing changes here (the other repository received them);
- `gc`: its snapshots (if any) had lost their manifests and the user accepted it
  (`gc --allow-empty` / `--accept-snapshot-count`): they are no longer expected;
- `key`, `retire`: nothing changes in the snapshots or holds.
The first entries of a journal (those with no predecessor) carry `baseline`: every snapshot
that existed when the journal started, with its hold, so a repository that had snapshots before
it had a journal is judged from then on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dedupe import codec
from dedupe.errors import FormatError

ACTIONS = (
    "snapshot",
    "forget",
    "gc",
    "hold",
    "release",
    "copy",
    "archive",
    "key",
    "retire",
)
DIRECTIONS = ("in", "out")
# Entries are written by dedupe and read back whole: anything longer is damage or hostility.
MAX_TEXT = 4096
MAX_SEQ = 1 << 62


@dataclass(frozen=True)
class SnapshotRef:
    """A snapshot as an entry names it: id, time, where from, and (per action) why: the
    policy's verdict for `forget`, the reason for `hold` and `archive`."""

    id: str
    time: datetime
    host: str = ""
    paths: tuple[str, ...] = ()
    why: str | None = None
    held: bool = False

    def short_id(self) -> str:
        return self.id[:8]


@dataclass(frozen=True)
class Entry:
    """One journal entry. `prev` names the entries that were the journal's newest when it was
    written (several after concurrent writers); `seq` is one more than the largest `seq` among
    them (0 for a first entry). `details` holds a few small facts of the action (the other
    repository of a copy, blobs verified, packs deleted)."""

    action: str
    time: datetime
    host: str
    user: str
    command: str
    snapshots: tuple[SnapshotRef, ...] = ()
    reason: str | None = None
    freed_bytes: int | None = None
    direction: str | None = None
    details: dict[str, str | int | bool] = field(default_factory=dict)
    prev: tuple[str, ...] = ()
    seq: int = 0
    baseline: tuple[SnapshotRef, ...] | None = None

    def snapshot_ids(self) -> list[str]:
        return [s.id for s in self.snapshots]


def _ref_to_obj(ref: SnapshotRef) -> dict[str, Any]:
    return {
        "id": bytes.fromhex(ref.id),
        "time": ref.time.isoformat(),
        "host": ref.host,
        "paths": list(ref.paths),
        "why": ref.why,
        "held": ref.held,
    }


def encode_entry(entry: Entry) -> bytes:
    obj: dict[str, Any] = {
        "v": codec.FORMAT_VERSION,
        "action": entry.action,
        "time": entry.time.isoformat(),
        "host": entry.host,
        "user": entry.user,
        "command": entry.command,
        "snapshots": [_ref_to_obj(s) for s in entry.snapshots],
        "reason": entry.reason,
        "freed": entry.freed_bytes,
        "direction": entry.direction,
        "details": dict(entry.details),
        "prev": [bytes.fromhex(p) for p in entry.prev],
        "seq": entry.seq,
    }
    if entry.baseline is not None:
        obj["baseline"] = [_ref_to_obj(s) for s in entry.baseline]
    return codec.pack(obj)


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise FormatError(f"{what}: malformed time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FormatError(f"{what}: malformed time") from None
    if moment.tzinfo is None:
        raise FormatError(f"{what}: time without a time zone")
    return moment


def _text(obj: dict[str, Any], key: str, what: str, optional: bool = False) -> Any:
    value = codec.opt_field(obj, key, str, what) if optional else codec.field(obj, key, str, what)
    if value is not None and len(value) > MAX_TEXT:
        raise FormatError(f"{what}: field {key!r} is implausibly long")
    return value


def _decode_ref(obj: Any, what: str) -> SnapshotRef:
    if not isinstance(obj, dict):
        raise FormatError(f"{what}: malformed snapshot reference")
    paths = codec.field(obj, "paths", list, what)
    if not all(isinstance(p, str) and len(p) <= MAX_TEXT for p in paths):
        raise FormatError(f"{what}: malformed paths")
    return SnapshotRef(
        id=codec.blob_id(codec.field(obj, "id", bytes, what), what).hex(),
        time=_time(obj.get("time"), what),
        host=_text(obj, "host", what),
        paths=tuple(paths),
        why=_text(obj, "why", what, optional=True),
        held=codec.field(obj, "held", bool, what),
    )


def _decode_refs(value: Any, what: str) -> tuple[SnapshotRef, ...]:
    if not isinstance(value, list):
        raise FormatError(f"{what}: malformed snapshot list")
    return tuple(_decode_ref(item, what) for item in value)


def decode_entry(data: bytes, name: str) -> Entry:
    """The entry stored as `journal/<name>` (its plaintext, already unsealed)."""
    what = f"journal entry {name[:8]}"
    obj = codec.check_version(codec.unpack(data, what), what)
    action = codec.field(obj, "action", str, what)
    if action not in ACTIONS:
        raise FormatError(f"{what}: unknown action {action!r}")
    direction = codec.opt_field(obj, "direction", str, what)
    if direction is not None and direction not in DIRECTIONS:
        raise FormatError(f"{what}: unknown direction {direction!r}")
    freed = codec.opt_field(obj, "freed", int, what)
    if freed is not None and not 0 <= freed < MAX_SEQ:
        raise FormatError(f"{what}: implausible bytes freed")
    seq = codec.field(obj, "seq", int, what)
    if not 0 <= seq < MAX_SEQ:
        raise FormatError(f"{what}: implausible sequence number")
    prev = codec.field(obj, "prev", list, what)
    details = codec.field(obj, "details", dict, what)
    for key, value in details.items():
        too_long = isinstance(value, str) and len(value) > MAX_TEXT
        if not isinstance(value, str | int | bool) or too_long:
            raise FormatError(f"{what}: malformed detail {key!r}")
    baseline = obj.get("baseline")
    return Entry(
        action=action,
        time=_time(obj.get("time"), what),
        host=_text(obj, "host", what),
        user=_text(obj, "user", what),
        command=_text(obj, "command", what),
        snapshots=_decode_refs(codec.field(obj, "snapshots", list, what), what),
        reason=_text(obj, "reason", what, optional=True),
        freed_bytes=freed,
        direction=direction,
        details=details,
        prev=tuple(codec.blob_id(p, what).hex() for p in prev),
        seq=seq,
        baseline=None if baseline is None else _decode_refs(baseline, what),
    )
