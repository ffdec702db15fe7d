"""The files cache: lets a nightly run skip reading files, and whole folders, that did not change.

Kept in `$DEDUPE_CACHE_DIR/<repo id>/files`. Keys are keyed BLAKE3 of the path (no plaintext path
reaches the disk). Two kinds of entries:
- files: inode, size, mtime, ctime -> the blob ids of the content;
- folders: a digest of every included entry's name and stat (and each subfolder's tree id) ->
  the folder's tree id and its own file count and bytes. An unchanged folder then costs one
  directory listing and its stat calls, nothing more.

Safety against gc (borg#9748): the cache records the repository's index file names when it was
saved. It is trusted as a whole only if all of those index files still exist and no gc is
pending: gc always supersedes the index files that name what it deletes. Otherwise folder
entries are ignored, a file entry is used only if every blob it names is in the index, and the
entries this run did not verify are dropped at save: the saved cache records the current index
names, so anything it carries forward must have been checked against that index.
A missing or damaged cache file just means a slower run; deleting it changes only speed.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Iterable
from typing import Any, TypeGuard

import msgpack

# Entries not seen by a run (another set of paths was backed up, or the file is gone) age and
# go after MAX_AGE runs.
MAX_AGE = 8
VERSION = 2


# An entry as stored: files [inode, size, mtime, ctime, blob ids, age],
# folders [digest, tree id, files, bytes, age]; anything read back is checked before use.
Entry = list[Any]


def _valid_entry(entry: object, length: int) -> TypeGuard[Entry]:
    return isinstance(entry, list) and len(entry) == length


class FilesCache:
    """Old entries read at start; this run's entries plus aged unseen ones written at the end."""

    def __init__(self, folder: str, key_hash: Callable[[bytes], bytes]) -> None:
        self.path = os.path.join(folder, "files")
        self._hash = key_hash
        self._old_files: dict[bytes, Entry] = {}
        self._old_dirs: dict[bytes, Entry] = {}
        self._index_names: list[str] = []
        self._new_files: dict[bytes, Entry] = {}
        self._new_dirs: dict[bytes, Entry] = {}
        self.trusted = False
        try:
            loaded = msgpack.unpackb(_read_cache_file(self.path), raw=False, strict_map_key=False)
            if isinstance(loaded, dict) and loaded.get("v") == VERSION:
                self._old_files = loaded.get("files") or {}
                self._old_dirs = loaded.get("dirs") or {}
                self._index_names = list(loaded.get("index") or [])
        except (OSError, ValueError, msgpack.UnpackException, TypeError):
            pass

    def check_generation(self, index_names: Iterable[str], gc_pending: bool) -> bool:
        """Decide whether the cache may be trusted without per-blob checks (see module doc)."""
        current = set(index_names)
        self.trusted = (
            bool(self._index_names) and not gc_pending and set(self._index_names) <= current
        )
        if not self.trusted:
            # Folder entries cannot be checked blob by blob; file entries are checked when used
            # (and then remembered), and the unused ones must not outlive this run.
            self._old_dirs = {}
        return self.trusted

    def key(self, path: bytes) -> bytes:
        return self._hash(path)[:16]

    # --- files -------------------------------------------------------------------------------

    def lookup(self, key: bytes, st: os.stat_result) -> list[bytes] | None:
        entry = self._old_files.get(key)
        if (
            _valid_entry(entry, 6)
            and entry[0] == st.st_ino
            and entry[1] == st.st_size
            and entry[2] == st.st_mtime_ns
            and entry[3] == st.st_ctime_ns
            and isinstance(entry[4], list)
        ):
            return entry[4]
        return None

    def remember(self, key: bytes, st: os.stat_result, blob_ids: list[bytes]) -> None:
        self._new_files[key] = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, blob_ids, 0]

    # --- folders -----------------------------------------------------------------------------

    def lookup_dir(self, key: bytes, digest: bytes) -> tuple[bytes, int, int] | None:
        """(tree id, own files, own bytes) if the folder is unchanged and the cache trusted."""
        entry = self._old_dirs.get(key)
        if _valid_entry(entry, 5) and entry[0] == digest and isinstance(entry[1], bytes):
            self._new_dirs[key] = [*entry[:4], 0]
            return entry[1], entry[2], entry[3]
        return None

    def remember_dir(
        self, key: bytes, digest: bytes, tree_id: bytes, files: int, size: int
    ) -> None:
        self._new_dirs[key] = [digest, tree_id, files, size, 0]

    def keep_files_under(self, keys: Iterable[bytes]) -> None:
        """Carry file entries of an unchanged folder over to the new cache unchanged."""
        for key in keys:
            entry = self._old_files.get(key)
            if entry is not None:
                self._new_files[key] = entry

    # --- saving ------------------------------------------------------------------------------

    def save(self, index_names: Iterable[str]) -> None:
        """Write atomically; `index_names` are the repository's index files now."""
        folder = os.path.dirname(self.path)
        tmp = f"{self.path}.{secrets.token_hex(4)}.tmp"
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            data = {
                "v": VERSION,
                "index": sorted(index_names),
                # Unverified old entries go with an untrusted cache: carried forward under the
                # new index names, the next run would trust them and could reference chunks a
                # gc deleted (borg#9748).
                "files": _merge_aged(self._new_files, self._old_files if self.trusted else {}, 6),
                "dirs": _merge_aged(self._new_dirs, self._old_dirs, 5),
            }
            with open(tmp, "wb") as f:
                f.write(msgpack.packb(data, use_bin_type=True))
            os.replace(tmp, self.path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _read_cache_file(path: str) -> bytes:
    """The cache file's bytes; OSError unless it is a regular file. A FIFO or a device put in
    its place must not hang the snapshot in open() or read(): a slower run is all it may cost."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def _merge_aged(
    new: dict[bytes, Entry], old: dict[bytes, Entry], length: int
) -> dict[bytes, Entry]:
    merged = dict(new)
    for key, entry in old.items():
        if key not in merged and _valid_entry(entry, length):
            age = entry[-1] + 1 if isinstance(entry[-1], int) else MAX_AGE
            if age < MAX_AGE:
                merged[key] = [*entry[:-1], age]
    return merged
