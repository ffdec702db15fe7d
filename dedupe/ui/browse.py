"""The browse pages' content: the snapshots, one folder of a snapshot, a search by name, and a
file streamed out blob by blob.

Folders are found with `dedupe.repo.treewalk.find` (the one path resolution `ls`, `cat` and
`restore --include` use, with its depth limit) and listed from their decoded tree; the search
is `dedupe.find`'s (each tree shared between snapshots searched once). A download yields one
verified blob at a time: memory stays at one chunk whatever the file's size, and a blob that
fails verification ends the download there (the browser sees a broken download, never wrong
bytes quietly completed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from dedupe.errors import UsageError
from dedupe.find import compile_pattern, find
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, FILE, SYMLINK, Node
from dedupe.repo import manifests, treewalk
from dedupe.repo.repository import Repository
from dedupe.ui.security import display
from dedupe.units import format_bytes

MAX_MATCHES = 500
"""Search results shown on one page; the rest are counted."""
_SNAPSHOT_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SnapshotRow:
    id: str
    short: str
    when: str
    host: str
    paths: str
    held: bool
    hold_reason: str


@dataclass(frozen=True)
class Entry:
    name: str
    path: bytes
    kind: str  # "folder", "file", "link"
    size: str
    modified: str
    target: str


@dataclass(frozen=True)
class Found:
    snapshot: SnapshotRow
    path: bytes
    folder: bytes
    kind: str
    size: str
    modified: str


def when(moment: datetime) -> str:
    return moment.astimezone().strftime("%a %d %b %Y, %H:%M")


def snapshot_row(snap: Snapshot) -> SnapshotRow:
    return SnapshotRow(
        id=snap.id,
        short=snap.short_id(),
        when=when(snap.time),
        host=snap.host,
        paths=", ".join(display(p) for p in snap.paths),
        held=snap.held,
        hold_reason=snap.hold_reason or "",
    )


def snapshots(repo: Repository, damaged: list[str]) -> list[SnapshotRow]:
    """Every readable snapshot, newest first."""
    return [snapshot_row(s) for s in reversed(manifests.load_all(repo, damaged))]


def snapshot(repo: Repository, snapshot_id: str) -> Snapshot:
    """The snapshot with this full id (UsageError: not a full id, or no such snapshot)."""
    if not _SNAPSHOT_ID.fullmatch(snapshot_id):
        raise UsageError("That is not a backup's id. Go back to the list of backups.")
    return manifests.load(repo, snapshot_id)


def folder(repo: Repository, snap: Snapshot, path: bytes) -> tuple[bytes, list[Entry]]:
    """The folder at `path` (its normalised path) and its entries, folders first."""
    full, node = treewalk.find(repo, snap.tree, path)
    if node is not None and node.type != DIR:
        raise UsageError(f"{display(full)} is a file, not a folder")
    tree_id = snap.tree if node is None else node.subtree
    nodes = treewalk.load_tree(repo, tree_id) if tree_id is not None else []
    prefix = b"" if full == b"/" else full
    entries = [_entry(prefix + b"/" + n.name, n) for n in nodes]
    entries.sort(key=lambda e: (e.kind != "folder", e.name.lower()))
    return full, entries


def file_node(repo: Repository, snap: Snapshot, path: bytes) -> tuple[bytes, Node]:
    """The regular file at `path` (UsageError for a folder, a link or nothing)."""
    full, node = treewalk.find(repo, snap.tree, path)
    if node is None or node.type != FILE:
        raise UsageError(f"{display(full)} is not a file in this backup")
    return full, node


def stream(repo: Repository, node: Node) -> Iterator[bytes]:
    """The file's bytes, one verified blob at a time."""
    for blob_id in node.content:
        yield repo.read_blob(blob_id)


def search(repo: Repository, glob: str, damaged: list[str]) -> tuple[list[Found], int, int]:
    """(matches newest snapshot first, at most MAX_MATCHES; how many in all; snapshots
    searched). A bad pattern is a UsageError naming it."""
    pattern = compile_pattern(glob)
    snaps = manifests.load_all(repo, damaged)
    result = find(repo, snaps, pattern)
    damaged.extend(
        f"backup {s.short_id()} could not be searched: {why}" for s, why in result.damaged
    )
    rows = []
    for match in reversed(result.matches[-MAX_MATCHES:]):
        node = match.node
        parent = match.path.rsplit(b"/", 1)[0] or b"/"
        rows.append(
            Found(
                snapshot=snapshot_row(match.snapshot),
                path=match.path,
                folder=match.path if node.type == DIR else parent,
                kind=_kind(node),
                size=format_bytes(node.size) if node.type == FILE else "",
                modified=_modified(node),
            )
        )
    return rows, len(result.matches), len(result.searched)


def download_name(path: bytes) -> str:
    """The file name offered to the browser (its last path component)."""
    return os.fsdecode(path.rsplit(b"/", 1)[-1]) or "download"


def _kind(node: Node) -> str:
    return {DIR: "folder", FILE: "file", SYMLINK: "link"}.get(node.type, "other")


def _modified(node: Node) -> str:
    try:
        return when(datetime.fromtimestamp(node.mtime_ns / 1e9).astimezone())
    except (OverflowError, OSError, ValueError):
        return "?"


def _entry(path: bytes, node: Node) -> Entry:
    return Entry(
        name=display(node.name),
        path=path,
        kind=_kind(node),
        size=format_bytes(node.size) if node.type == FILE else "",
        modified=_modified(node),
        target=display(node.target or b"") if node.type == SYMLINK else "",
    )
