"""The storage protocol: a backend only moves opaque bytes under validated names.

Guarantees every backend gives (checked by `tests/storage_conformance.py`):
- `put` is atomic: after it returns the object is fully visible; a crash or error in the middle
  never leaves a partial object under its final name (temporary names are used and cleaned up).
- `put` is durable when it returns (local: fsync of file and directory; remote: the server's ack).
- `get` returns exactly the stored bytes, or the requested range of them; a missing object raises
  `ObjectNotFound`.
- `list(prefix)` yields every final name under the prefix (never temporary names), each once.
  A listing that cannot be completed raises; it never yields a partial list as if complete
  (gc deletes what a listing does not show). Only a start folder that does not exist is empty.
- A ranged `get` that reaches past the end of the object raises `ShortRead` (the object is
  shorter than its reader knows it to be: a truncated pack), never returns fewer bytes.
- `delete` of a missing object raises `ObjectNotFound`.
- Errors are `ObjectNotFound`, `ShortRead`, `TransientStorageError` (safe to retry), `OutOfSpace`,
  or `StorageError` (permanent). Nothing else escapes a backend.
- `list_leftovers()` yields the temporaries interrupted writes left behind, and
  `delete_leftover(leftover)` deletes one (refusing any name that is not a temporary in a folder
  dedupe writes), for gc and check. Leftovers are looked for only in the folders dedupe writes
  (`WRITER_DIRS` and data/<2 hex>/). Backends whose writes cannot leave any (memory, S3: a PUT
  is all or nothing) list none.
- `max_connections` is how many requests are worth sending at once (1 for a local disk).

A backend never sees a key or a plaintext byte: the repository layer encrypts before `put`.
Names are relative, '/'-separated, and limited to a safe alphabet (see `validate_name`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from dedupe.errors import ObjectNotFound, ShortRead, StorageError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*$")


def validate_name(name: str) -> str:
    """Return `name` if it is a safe object name, else raise StorageError.

    Safe: relative, '/'-separated components of [A-Za-z0-9_.-] that do not start with '.',
    '-' or '_' (so no '..', no hidden temporaries, no absolute paths), at most 255 characters.
    """
    if not isinstance(name, str) or len(name) > 255 or not _NAME_RE.match(name):
        raise StorageError(f"invalid object name {name!r}")
    return name


def redact_url(url: str) -> str:
    """`url` with any password in it shown as '***', for every message and `Storage.url`.

    Splits by hand rather than with urlparse, which refuses some malformed URLs (a bad port)
    that still need a safe message; the password runs to the last '@' before the path.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, at, host = rest[:end].rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}{rest[end:]}"


def short_read(name: str, offset: int, length: int | None) -> ShortRead:
    """The error every backend raises for a range past the end of `name` (one wording)."""
    return ShortRead(f"short read of {name}: wanted {length} bytes at {offset}")


@dataclass(frozen=True)
class ObjectInfo:
    """What `list` and `stat` tell about a stored object.

    `mtime` is when the object was last written, in seconds since the epoch by the storage's
    own clock (the file system's, the SFTP server's, the S3 server's), or None where a backend
    cannot tell. It serves age margins (gc's grace period); compare it with another time from
    the same storage, or allow for clock skew.
    """

    name: str
    size: int
    mtime: float | None = None


@dataclass(frozen=True)
class Leftover:
    """A temporary object an interrupted write left behind, found by `list_leftovers`.

    `name` is relative to the repository root ('data/ab/.tmp-1f2e'), `age` in seconds.
    """

    name: str
    size: int
    age: float


TEMP_PREFIX = ".tmp-"

# The folders dedupe's own writers put objects in ('' is the root); pack folders data/<2 hex>/
# come on top. Only here may a `.tmp-*` file be a leftover of ours: a new kind of object in a
# new folder must be added here, or its interrupted writes are never cleaned up.
WRITER_DIRS = ("", "data", "index", "snapshots", "locks", "keys", "holds", "journal")

_PACK_FOLDER_RE = re.compile(r"[0-9a-f]{2}")


def is_pack_folder_name(name: str) -> bool:
    """True for a data/ subfolder name dedupe writes packs into (two lowercase hex digits)."""
    return bool(_PACK_FOLDER_RE.fullmatch(name))


def leftover_name_ok(name: str) -> bool:
    """Only a temporary file's name in a folder dedupe writes may ever be deleted as a leftover."""
    folder, _, base = name.rpartition("/")
    return (
        base.startswith(TEMP_PREFIX)
        and "\0" not in name
        and (folder in WRITER_DIRS or is_pack_folder(folder))
    )


def is_pack_folder(folder: str) -> bool:
    """True for 'data/<2 hex>', a folder packs are written into."""
    top, _, sub = folder.partition("/")
    return top == "data" and is_pack_folder_name(sub)


def refuse_leftover(leftover: Leftover) -> None:
    """`delete_leftover` of a backend that never leaves temporaries behind: a name that is not
    a leftover's is refused as on every backend, any other is simply not there."""
    if not leftover_name_ok(leftover.name):
        raise StorageError(f"not a leftover temporary file: {leftover.name!r}")
    raise ObjectNotFound(f"not found: {leftover.name}")


@runtime_checkable
class Storage(Protocol):
    """The backend interface. Implementations: local, memory, sftp, s3; the wrappers in
    `retry` and `faults` implement it by delegating."""

    url: str

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read the object (or `length` bytes from `offset`)."""
        ...

    def put(self, name: str, data: bytes | bytearray | memoryview, exclusive: bool = False) -> None:
        """Store atomically and durably. With `exclusive`, raise ObjectExists if the name exists
        (best effort where the server cannot do it atomically)."""
        ...

    def delete(self, name: str) -> None:
        """Remove the object."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object in the folder `prefix` and below. `prefix` is '' or a folder name ending
        in '/' (such as 'data/'); other prefixes are not portable across backends.

        A listing that cannot be completed raises; it never yields a partial list as if
        complete. An unreadable folder, a failing disk, a dropped connection (after retries) or
        a start "folder" that is a file all raise StorageError (TransientStorageError where a
        retry may help); only a start folder that does not exist lists as empty.
        """
        ...

    def stat(self, name: str) -> ObjectInfo:
        """Size of one object; ObjectNotFound if absent."""
        ...

    def exists(self, name: str) -> bool:
        """True if the object exists."""
        ...

    def free_space(self) -> int | None:
        """Bytes free for new objects, or None when the backend cannot tell (object stores)."""
        ...

    @property
    def max_connections(self) -> int:
        """How many requests are worth having in flight at once (uploads in parallel)."""
        ...

    def list_leftovers(self) -> Iterator[Leftover]:
        """Temporary objects interrupted writes left behind (none where writes cannot)."""
        ...

    def delete_leftover(self, leftover: Leftover) -> None:
        """Delete one leftover; StorageError for a name that is not a leftover's."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
