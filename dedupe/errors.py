"""One small exception hierarchy; each class carries the exit code the CLI maps it to.

Library code raises these (never prints); `dedupe.cli.main` turns them into a message on stderr
and the contract's exit code. Messages must never contain a password or key material.
"""

from __future__ import annotations


class DedupeError(Exception):
    """An expected failure with a message for the user (exit 1)."""

    exit_code = 1


class UsageError(DedupeError):
    """The command line is wrong (exit 2)."""

    exit_code = 2


class PartialSnapshot(DedupeError):
    """The snapshot was written but some files could not be read (exit 3)."""

    exit_code = 3


class NoRepository(DedupeError):
    """There is no repository at the given URL (exit 10)."""

    exit_code = 10


class RepositoryLocked(DedupeError):
    """Another process holds a conflicting lock (exit 11)."""

    exit_code = 11


class WrongPassword(DedupeError):
    """The password or key does not open the repository, or no password is available (exit 12)."""

    exit_code = 12


class OutOfSpace(DedupeError):
    """The storage is full; the command stopped cleanly and the repository is intact (exit 13)."""

    exit_code = 13


class DestinationFull(DedupeError):
    """A copy's destination (a drive) is full: what fits was copied, whole snapshots only, the
    rest is named with the space it needs (exit 13, as out of space; the message carries its own
    remedy, which is about the destination, not the source)."""

    exit_code = 13


class DamageError(DedupeError):
    """Stored data failed verification: a MAC, a keyed id, a size or a structure (exit 14)."""

    exit_code = 14


class FormatError(DamageError):
    """A stored object could not be decoded: it is damaged, hostile or of an unknown format."""


class TreesTooDeep(FormatError):
    """Snapshot trees nest deeper than `dedupe.repo.treewalk.MAX_DEPTH`: no real folder
    structure does, so the trees are hostile or damaged (a tree naming itself ends here too)."""

    def __init__(self, message: str = "snapshot trees nest implausibly deep (hostile or damaged)"):
        super().__init__(message)


class UnsupportedVersion(DedupeError):
    """The repository was written by an unknown (newer) format version (exit 1)."""


# --- storage errors: the three a backend may raise (plus OutOfSpace) -----------------------


class StorageError(DedupeError):
    """A backend failed permanently (exit 1)."""


class ObjectNotFound(StorageError):
    """The named object does not exist in the backend."""


class ShortRead(StorageError):
    """A ranged read reached past the end of the object: it is shorter than the caller knows it
    to be (a truncated pack). Permanent, never retried; the repository reports it as damage."""


class TransientStorageError(StorageError):
    """A backend failure that may succeed when retried (timeouts, dropped connections)."""


class ObjectExists(StorageError):
    """An exclusive put found the name already taken (another writer got there first)."""
