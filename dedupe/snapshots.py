"""Snapshot manifests in a repository: list, resolve `SNAP` arguments, save, delete."""

from __future__ import annotations

import secrets

from dedupe.errors import DamageError, UsageError
from dedupe.model.snapshot import Snapshot, decode_snapshot, encode_snapshot
from dedupe.repo.repository import Repository


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


def delete(repo: Repository, snapshot: Snapshot) -> None:
    repo.delete_manifest(snapshot.id)
