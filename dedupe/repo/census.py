"""The census: how many snapshots the repository held when last counted, so gc can tell a
repository that lost its manifests (or a listing that lies) from one whose snapshots were forgotten.

gc deletes every chunk that no snapshot it sees references. If listing `snapshots/` silently
returns too little (a failing disk, a half-mounted share, a bug), gc would take that as the truth
and delete backups that still matter. The census is a second witness: `forget` records the count
it leaves behind, gc records the count it saw at the end of every run that succeeded, and gc
refuses to delete when it now sees far fewer snapshots than recorded (`dedupe.gc.collect`).

The object `census` is sealed like every other object (its count would otherwise tell an
onlooker how many backups exist): `seal(msgpack {"v": 1, "snapshots": int, "time": float})`.
An absent census reads as None (a repository from before the census, or one never counted);
a damaged one raises, never reads as None: a damaged witness must not silently stop witnessing.
"""

from __future__ import annotations

import time
from typing import Protocol

from dedupe import codec
from dedupe.crypto.seal import Sealer
from dedupe.errors import DamageError, DedupeError, FormatError, ObjectNotFound
from dedupe.storage.base import Storage

CENSUS_NAME = "census"
# A drop is sharp (gc refuses) when fewer than half the recorded snapshots remain and at least
# this many are gone: forgetting one or two of three is an ordinary weekly routine.
SHARP_DROP_MIN = 3
# A count beyond this is not a plausible number of snapshots: the object is damaged or hostile.
MAX_COUNT = 1 << 40


class _Repo(Protocol):
    storage: Storage
    sealer: Sealer


def load_snapshot_count(repo: _Repo) -> int | None:
    """The recorded snapshot count, or None if no census exists. A census that cannot be read
    or decoded raises (DamageError/FormatError, or the storage's error)."""
    try:
        data = repo.storage.get(CENSUS_NAME)
    except ObjectNotFound:
        return None
    what = "the snapshot census"
    obj = codec.check_version(codec.unpack(repo.sealer.open(data, what), what), what)
    count = codec.field(obj, "snapshots", int, what)
    codec.field(obj, "time", (int, float), what)
    if not 0 <= count < MAX_COUNT:
        raise FormatError(f"{what}: snapshot count out of range")
    return count


def record_snapshot_count(repo: _Repo, count: int, now: float | None = None) -> None:
    """Record `count` (atomically: the storage's put replaces the whole object or nothing)."""
    if not 0 <= count < MAX_COUNT:
        raise ValueError("snapshot count out of range")
    plaintext = codec.pack(
        {
            "v": codec.FORMAT_VERSION,
            "snapshots": int(count),
            "time": float(time.time() if now is None else now),
        }
    )
    repo.storage.put(CENSUS_NAME, repo.sealer.seal(plaintext))


def record_after_forget(repo: _Repo, seen: int, removed: int) -> None:
    """For `forget`, after it deleted `removed` of the `seen` manifests it listed: record
    `max(seen, recorded) - removed`. A forget on a listing that showed too few snapshots then
    keeps the alarm for gc (the recorded count only drops by what forget itself removed), while
    a real forget never trips it. A damaged census is left as it is: gc reports it."""
    try:
        recorded = load_snapshot_count(repo)
    except DamageError:
        return
    record_snapshot_count(repo, max(0, max(seen, recorded or 0) - removed))


def record_after_snapshot(repo: _Repo, seen: int) -> None:
    """For `snapshot`, after its manifest is durable: raise the recorded count to the `seen`
    manifests it lists now, never lower it. Without this, snapshots taken since the last forget
    or gc would not count, and a listing that lost most of a year's nights could still pass
    gc's check. Two snapshots racing here can only leave the lower of their counts: less
    protection for a night, never a false alarm."""
    recorded = load_snapshot_count(repo)
    if recorded is None or seen > recorded:
        record_snapshot_count(repo, seen)


class SnapshotCountRefused(DedupeError):
    """gc saw no snapshots, or far fewer than last counted, and deleted nothing (exit 1)."""


def _amount(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 10_000_000 else f"{n / 1e6:,.0f} MB"


def check_count(
    seen: int,
    remembered: int | None,
    pack_bytes: int,
    allow_empty: bool = False,
    accept_count: int | None = None,
) -> None:
    """Raise SnapshotCountRefused unless deleting on the strength of `seen` snapshots is
    plausible: none seen while packs hold `pack_bytes` needs `allow_empty`; fewer than half of
    the `remembered` count (and at least SHARP_DROP_MIN fewer) needs `accept_count == seen`,
    which accepts exactly that count, so a later drop still stops gc. Pure: no storage."""
    if seen == 0 and pack_bytes > 0:
        if allow_empty:
            return
        raise SnapshotCountRefused(
            f"gc found no snapshots at all, but the repository holds {_amount(pack_bytes)} of "
            "backup data; it deleted nothing. If the snapshots folder is unreadable or the disk "
            "is failing, fix that first; if you really removed every snapshot, run "
            "'dedupe gc --allow-empty'"
        )
    if remembered is None or not (seen * 2 < remembered and remembered - seen >= SHARP_DROP_MIN):
        return
    if accept_count == seen:
        return
    given = (
        f" (--accept-snapshot-count {accept_count} was given, but gc found {seen})"
        if accept_count is not None
        else ""
    )
    raise SnapshotCountRefused(
        f"gc found only {seen} snapshot(s), but the repository held {remembered} when they were "
        f"last counted; it deleted nothing{given}. If snapshots disappeared without "
        "'dedupe forget' (a failing disk, an unreadable or half-copied snapshots folder), fix "
        "that first: gc would delete their data for good. If they were removed on purpose, run "
        f"'dedupe gc --accept-snapshot-count {seen}'"
    )


def remembered_count(
    repo: _Repo, seen: int, allow_empty: bool, accept_count: int | None
) -> int | None:
    """`load_snapshot_count` for gc: a damaged census stops gc with a way out, unless the user
    already accepted the count gc sees (then the census is overwritten at the end of the run)."""
    try:
        return load_snapshot_count(repo)
    except DamageError as exc:
        if accept_count == seen or (allow_empty and seen == 0):
            return None
        raise DamageError(
            "gc cannot read its record of how many snapshots the repository held (the object "
            f"'census': {exc}); it deleted nothing. It found {seen} snapshot(s): if that is "
            f"right, run 'dedupe gc --accept-snapshot-count {seen}' (which also rewrites the "
            "record); if the disk is failing, fix that first"
        ) from None
