"""What is at a repository URL when it is not a dedupe repository: another tool's, or a folder.

Guarantees:
- `identify` names the backup tool whose repository layout is there (restic, Borg 1, Borg 2,
  kopia, duplicacy), so the user is told "this is a restic repository, not a dedupe one" (exit
  10) instead of "damaged" (exit 14): nothing is damaged, it is simply not ours. It reads at
  most a few small objects (a README's first bytes, one listing entry per folder) and never
  writes. Layouts recognised:
  - restic: `config` and `keys/` whose names are 64 hex digits (dedupe's key names have 16);
  - Borg 1: a `README` that starts "This is a Borg Backup repository", or a `config` holding
    `[repository]`;
  - Borg 2 (borgstore): `config/` and `archives/` folders;
  - kopia: `kopia.repository.f` (or `kopia.repository`);
  - duplicacy: `config`, `chunks/` and `snapshots/`, no `keys/`.
- `occupant` says what already lives in a folder where `init` is asked to create a repository:
  any object, except the furniture file systems put at a drive's top (`lost+found`, macOS's
  `.Spotlight-V100`, Windows' `System Volume Information`...), makes the folder occupied, so
  `init` never mixes a repository into a folder of documents (Borg refuses the same way).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from dedupe.errors import ObjectNotFound, StorageError
from dedupe.storage import Storage

_HEX64 = re.compile(r"[0-9a-f]{64}")
_BORG_README = b"This is a Borg Backup repository"

# What a file system (or an OS looking at a drive) puts at a drive's top by itself.
FURNITURE = frozenset(
    {
        "lost+found",
        ".Spotlight-V100",
        ".Trashes",
        ".fseventsd",
        ".DS_Store",
        ".TemporaryItems",
        ".DocumentRevisions-V100",
        "System Volume Information",
        "$RECYCLE.BIN",
    }
)


@dataclass(frozen=True)
class Foreign:
    """Another tool's repository: which tool, and the names that told."""

    tool: str
    evidence: str

    def message(self, url: str) -> str:
        """What the user reads: what it is, what to do, then what was seen."""
        return (
            f"this is a {self.tool} repository, not a dedupe one: {url}. dedupe cannot read "
            f"it (use {self.tool.split()[0].lower()} for it); give dedupe its own folder, "
            f"e.g. a new one for 'dedupe init'. (Found: {self.evidence}.)"
        )


def _first(storage: Storage, prefix: str) -> str | None:
    """The name of one object under `prefix/`, or None (an unreadable folder counts as none)."""
    try:
        for info in storage.list(prefix):
            return info.name
    except StorageError:
        return None
    return None


def _head(storage: Storage, name: str, size: int = 256) -> bytes | None:
    try:
        return storage.get(name, 0, size)
    except ObjectNotFound:
        return None
    except StorageError:
        # A short object (shorter than `size`) or one that cannot be ranged: read it whole,
        # if it is small enough to be a README or a config.
        try:
            info = storage.stat(name)
            return storage.get(name) if info.size <= 64 * 1024 else None
        except StorageError:
            return None


def _exists(storage: Storage, name: str) -> bool:
    try:
        return storage.exists(name)
    except StorageError:
        return False


def identify(storage: Storage) -> Foreign | None:
    """The other tool whose repository is in `storage`, or None (see the module docstring)."""
    readme = _head(storage, "README")
    if readme is not None and readme.startswith(_BORG_README):
        return Foreign("Borg", "README: 'This is a Borg Backup repository'")
    has_config = _exists(storage, "config")
    if has_config:
        config = _head(storage, "config") or b""
        if config.lstrip().startswith(b"[repository]"):
            return Foreign("Borg", "config with a [repository] section")
        key = _first(storage, "keys")
        if key is not None and _HEX64.fullmatch(key.rsplit("/", 1)[-1]):
            return Foreign("restic", "config, and keys/ with names of 64 hex digits")
        if key is None and _first(storage, "chunks") is not None:
            if _first(storage, "snapshots") is not None:
                return Foreign("duplicacy", "config, chunks/, snapshots/")
    for name in ("kopia.repository.f", "kopia.repository"):
        if _exists(storage, name):
            return Foreign("kopia", name)
    if not has_config and _first(storage, "config") is not None:
        if _first(storage, "archives") is not None:
            return Foreign("Borg 2", "config/ and archives/ folders")
    return None


def occupant(storage: Storage, local_root: str | None = None) -> str | None:
    """The first thing found in the repository folder, or None when it is empty (but for file
    system furniture). `local_root`, for a folder on this machine, also finds hidden files and
    folders, which the storage does not list."""
    if local_root is not None:
        try:
            names = sorted(os.listdir(local_root))
        except FileNotFoundError:
            return None
        for name in names:
            if name not in FURNITURE:
                return name
        return None
    try:
        for info in storage.list(""):
            if info.name.split("/", 1)[0] not in FURNITURE:
                return info.name
    except StorageError:
        return None
    return None
