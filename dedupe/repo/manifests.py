"""Snapshot manifests in a repository: list, resolve `SNAP` arguments, save, delete; and the
hold records that guard held snapshots (`hold`, `release`, `load_hold_records`, `hold_problems`).

Why hold records: a hold is a field of the manifest, and a manifest is one object an intruder
(or a careless cleanup) can delete, or replace by an older, unheld copy, without breaking any
MAC. A second sealed object per hold, `holds/<snapshot id>`, makes both visible: `check` reports
a record whose manifest is missing or unheld, and `forget` keeps a snapshot that has a record
whatever its manifest says. (Deleting both objects is unseen here; the retention journal,
`dedupe.repo.journal`, covers it: `check` compares the holds it records with the records.)

`commit` also journals the new snapshot (after its manifest: an addition is recorded once done).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime

from dedupe.errors import DamageError, DedupeError, ObjectNotFound, RepositoryLocked, UsageError
from dedupe.model.snapshot import (
    HoldRecord,
    Snapshot,
    decode_hold_record,
    decode_snapshot,
    encode_hold_record,
    encode_snapshot,
)
from dedupe.repo import census, journal
from dedupe.repo.lock import Lock
from dedupe.repo.repository import Repository

HOLDS_FOLDER = "holds/"


def new_snapshot_id() -> str:
    return secrets.token_hex(32)


def load(repo: Repository, snapshot_id: str) -> Snapshot:
    return decode_snapshot(repo.load_manifest(snapshot_id), snapshot_id)


def load_all(repo: Repository, damaged: list[str] | None = None) -> list[Snapshot]:
    """Every snapshot, oldest first. Damaged manifests raise, or are listed in `damaged`."""
    result = []
    for name in repo.snapshot_names():
        try:
            result.append(load(repo, name))
        except DamageError as exc:
            if damaged is None:
                raise
            damaged.append(f"snapshot {name[:8]}: {exc}")
        except UsageError:
            continue  # deleted while we listed
    result.sort(key=lambda s: (s.time, s.id))
    return result


def resolve(repo: Repository, spec: str) -> Snapshot:
    """A full id, a unique prefix of at least 4 hex digits, or `latest`."""
    if spec == "latest":
        snaps = load_all(repo)
        if not snaps:
            raise UsageError("the repository has no snapshots")
        return snaps[-1]
    spec_l = spec.lower()
    if len(spec_l) < 4 or any(c not in "0123456789abcdef" for c in spec_l):
        raise UsageError(
            f"invalid snapshot {spec!r}: give an id, a prefix of 4+ hex digits, or latest"
        )
    matches = [n for n in repo.snapshot_names() if n.startswith(spec_l)]
    if not matches:
        raise UsageError(f"no snapshot matches {spec!r}")
    if len(matches) > 1:
        raise UsageError(f"{spec!r} matches {len(matches)} snapshots; give more digits")
    return load(repo, matches[0])


def save(repo: Repository, snapshot: Snapshot) -> int:
    """Write (or replace) the manifest; returns the stored size."""
    return repo.save_manifest(snapshot.id, encode_snapshot(snapshot))


def commit(repo: Repository, lock: Lock, snapshot: Snapshot) -> int:
    """Make a new snapshot reachable: its packs and index files are durable already (the helper
    process's index before ours, FORMAT.md's write order); now the manifest. Returns its size.

    Before the manifest, the snapshot makes sure nothing deleted what it deduplicated against:
    its lock must still stand (a gc that misjudged it as stale could have run), and no gc or
    `repair index` may have written an index since this process loaded its own. Either way it
    raises and saves nothing: the night's data stays as unreferenced packs (gc keeps them for
    its grace period), and no snapshot that references a deleted chunk is ever written.
    After the manifest, the census learns the new count (gc's witness; see dedupe.repo.census)
    and the journal gets a `snapshot` entry (after: a crash in between leaves a snapshot the
    journal does not know, which `check` notes, never a journalled snapshot that is absent).
    """
    lock.verify()
    if repo.index_changed_since_load():
        raise RepositoryLocked(
            "a gc or 'dedupe repair index' ran while this backup was running, so the backup was "
            "not saved; nothing else changed. Run the backup again."
        )
    size = save(repo, snapshot)
    try:
        census.record_after_snapshot(repo, len(repo.snapshot_names()))
    except DedupeError:
        pass  # the snapshot is saved; a census left behind only weakens gc's check, and gc
        # itself reports a damaged census
    try:
        command = journal.command_line(["snapshot", *snapshot.display_paths()])
        entry = journal.new_entry("snapshot", command, snapshots=(journal.ref(snapshot),))
        name = journal.append(repo, entry)
        size += repo.storage.stat(journal.JOURNAL_FOLDER + name).size  # the repository grew by it
    except DedupeError:
        pass  # the snapshot is saved and must not be reported as failed; `check` notes a
        # snapshot the journal does not know
    return size


def delete(repo: Repository, snapshot: Snapshot) -> None:
    repo.delete_manifest(snapshot.id)


# --- hold records ------------------------------------------------------------------------------


def hold(repo: Repository, snapshot: Snapshot, reason: str | None, now: datetime) -> Snapshot:
    """Hold `snapshot` (the caller holds the exclusive lock): the record, then the manifest.

    Record first: an interruption between the two writes leaves a record beside an unheld
    manifest, which `forget` already treats as held (and `check` reports until `hold` is run
    again); the other order would leave a held manifest without its record, whose deletion or
    replacement would then go unnoticed. The record is rewritten even when the manifest was
    already held, so holds made before records existed get one by holding them again."""
    updated = snapshot.with_hold(True, reason)
    record = HoldRecord(updated.id, reason, now, updated.time)
    repo.storage.put(HOLDS_FOLDER + updated.id, repo.sealer.seal(encode_hold_record(record)))
    if updated != snapshot:
        save(repo, updated)
    return updated


def release(repo: Repository, snapshot: Snapshot) -> Snapshot:
    """End the hold (the caller holds the exclusive lock): the manifest, then the record.

    Manifest first, for the same reason as in `hold`: interrupted in between, the record still
    keeps the snapshot from `forget` and `check` says so; the other order would leave a held
    manifest with no record, unguarded. A record without a held manifest (an older copy put
    back) is deleted too: releasing is what the user asked for."""
    updated = snapshot.with_hold(False, None)
    if updated != snapshot:
        save(repo, updated)
    try:
        repo.storage.delete(HOLDS_FOLDER + snapshot.id)
    except ObjectNotFound:
        pass
    return updated


def has_hold_record(repo: Repository, snapshot_id: str) -> bool:
    return repo.storage.exists(HOLDS_FOLDER + snapshot_id)


def load_hold_records(repo: Repository, damaged: list[str]) -> dict[str, HoldRecord | None]:
    """Snapshot id -> its hold record, or None when the record cannot be read (damage, listed
    in `damaged`): an unreadable record still names a held snapshot, which callers keep."""
    records: dict[str, HoldRecord | None] = {}
    for info in repo.storage.list(HOLDS_FOLDER):
        name = info.name.split("/")[-1]
        if len(name) != 64 or any(c not in "0123456789abcdef" for c in name):
            continue
        try:
            sealed = repo.storage.get(info.name)
        except ObjectNotFound:
            continue  # released while we listed
        try:
            records[name] = decode_hold_record(repo.sealer.open(sealed, f"hold {name[:8]}"), name)
        except DamageError as exc:
            damaged.append(f"hold record {name[:8]} is damaged: {exc}")
            records[name] = None
    return records


def held_by_record(snapshot: Snapshot, records: dict[str, HoldRecord | None]) -> Snapshot:
    """`snapshot` as held if a hold record names it, whatever its manifest says."""
    if snapshot.held or snapshot.id not in records:
        return snapshot
    record = records[snapshot.id]
    return snapshot.with_hold(True, record.reason if record is not None else None)


def hold_problems(
    snaps: Iterable[Snapshot], manifest_names: Iterable[str], records: dict[str, HoldRecord | None]
) -> tuple[list[str], list[str]]:
    """(errors, warnings) from comparing hold records with manifests.

    Errors: a record whose manifest is missing or not held (a hold silently lost). Warnings: a
    held manifest without a record (held before records existed). A manifest that exists but
    is not in `snaps` is damaged, which the caller reports itself."""
    by_id = {s.id: s for s in snaps}
    present = set(manifest_names)
    errors, warnings = [], []
    for sid, record in sorted(records.items()):
        if record is None:
            continue
        label = _record_label(record)
        if sid not in present:
            errors.append(f"{label} is missing: its manifest was deleted")
        elif sid in by_id and not by_id[sid].held:
            errors.append(
                f"{label} is not held in its manifest: its manifest was replaced by an older "
                f"copy that is not held (or 'dedupe hold {sid[:8]}' was interrupted: run it "
                "again)"
            )
    for snap in by_id.values():
        if snap.held and snap.id not in records:
            warnings.append(
                f"held snapshot {snap.short_id()} has no hold record (held before this version "
                f"of dedupe): run 'dedupe hold {snap.short_id()}' to record it"
            )
    return errors, warnings


def _record_label(record: HoldRecord) -> str:
    reason = f"reason {record.reason}" if record.reason else "no reason given"
    held_on = record.held_at.isoformat(timespec="seconds")
    return f"held snapshot {record.snapshot_id[:8]} ({reason}, held on {held_on})"
