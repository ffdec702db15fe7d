"""The files cache: lets a nightly run skip reading files that did not change.

Kept in `$DEDUPE_CACHE_DIR/<repo id>/files`, keyed by keyed BLAKE3 of the path (no plaintext
path reaches the disk), with inode, size, mtime and ctime. An entry is used only if every blob id
it names is still in the repository's index, so a cache older than a gc can never make a
snapshot reference a deleted chunk. A missing or damaged cache file just means a slower run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable

import msgpack

CacheKey = bytes
# An entry: [inode, size, mtime_ns, ctime_ns, blob ids, runs since last seen]. Entries not seen
# by a run (another set of paths was backed up, or the file is gone) age and go after MAX_AGE runs.
MAX_AGE = 8


def default_cache_dir() -> str:
    explicit = os.environ.get("DEDUPE_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dedupe")


class FilesCache:
    """Old entries read at start; this run's entries plus aged unseen ones written at the end."""

    def __init__(self, folder: str, key_hash: Callable[[bytes], bytes]) -> None:
        self.path = os.path.join(folder, "files")
        self._hash = key_hash
        self._old: dict[bytes, list] = {}
        self._new: dict[bytes, list] = {}
        try:
            with open(self.path, "rb") as f:
                loaded = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
            if isinstance(loaded, dict):
                self._old = loaded
        except (OSError, ValueError, msgpack.UnpackException, TypeError):
            self._old = {}

    def key(self, path: bytes) -> bytes:
        return self._hash(path)[:16]

    def lookup(self, key: bytes, st: os.stat_result) -> list[bytes] | None:
        entry = self._old.get(key)
        if (
            isinstance(entry, list)
            and len(entry) == 6
            and entry[0] == st.st_ino
            and entry[1] == st.st_size
            and entry[2] == st.st_mtime_ns
            and entry[3] == st.st_ctime_ns
            and isinstance(entry[4], list)
        ):
            return entry[4]
        return None

    def remember(self, key: bytes, st: os.stat_result, blob_ids: list[bytes]) -> None:
        self._new[key] = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, blob_ids, 0]

    def save(self) -> None:
        """Write the entries of this run atomically; errors only cost speed next time."""
        folder = os.path.dirname(self.path)
        tmp = f"{self.path}.{secrets.token_hex(4)}.tmp"
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            merged = dict(self._new)
            for key, entry in self._old.items():
                if key not in merged and isinstance(entry, list) and len(entry) == 6:
                    age = entry[5] + 1 if isinstance(entry[5], int) else MAX_AGE
                    if age < MAX_AGE:
                        merged[key] = [*entry[:5], age]
            with open(tmp, "wb") as f:
                f.write(msgpack.packb(merged, use_bin_type=True))
            os.replace(tmp, self.path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
