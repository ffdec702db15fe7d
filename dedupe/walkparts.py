"""Pieces of the walk that need no Archiver state: exclusion patterns, owner names, the digest
that says whether a folder changed, and the normalised list of sources."""

from __future__ import annotations

import fnmatch
import grp
import os
import pwd
from collections.abc import Callable, Iterable

import blake3
import msgpack


class Excluder:
    """`--exclude GLOB`: a pattern without '/' matches a name anywhere; one with '/' matches
    the whole absolute path (and everything under a matched folder is left out with it)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.by_name = [p for p in patterns if "/" not in p]
        self.by_path = [p.rstrip("/") for p in patterns if "/" in p]
        self.active = bool(self.by_name or self.by_path)

    def excluded(self, path: bytes, name: bytes) -> bool:
        if not self.by_name and not self.by_path:
            return False
        name_s = os.fsdecode(name)
        if any(fnmatch.fnmatchcase(name_s, p) for p in self.by_name):
            return True
        path_s = os.fsdecode(path)
        return any(fnmatch.fnmatchcase(path_s, p) for p in self.by_path)


def _cached_name(
    number: int, cache: dict[int, str | None], lookup: Callable[[int], str]
) -> str | None:
    if number not in cache:
        try:
            cache[number] = lookup(number)
        except KeyError:  # no such user or group on this machine
            cache[number] = None
    return cache[number]


def owner_name(uid: int, cache: dict[int, str | None]) -> str | None:
    return _cached_name(uid, cache, lambda n: pwd.getpwuid(n).pw_name)


def group_name(gid: int, cache: dict[int, str | None]) -> str | None:
    return _cached_name(gid, cache, lambda n: grp.getgrgid(n).gr_name)


def folder_digest(
    children: list[tuple[bytes, bytes, os.stat_result]], subtrees: dict[bytes, bytes | None]
) -> bytes:
    """A digest of everything that would change a folder's tree: each entry's name and stat,
    and each subfolder's tree id."""
    packed = msgpack.packb(
        [
            (
                name,
                st.st_mode,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_uid,
                st.st_gid,
                subtrees.get(name),
            )
            for name, _child, st in children
        ]
    )
    return blake3.blake3(packed).digest()[:16]


def normalise_sources(paths: Iterable[bytes]) -> list[bytes]:
    """Absolute, normalised, without paths that lie under another given path."""
    absolute = sorted({os.path.normpath(os.path.abspath(p)) for p in paths})
    kept: list[bytes] = []
    for path in absolute:
        if path == b"/":
            return [b"/"]
        if not any(path.startswith(k.rstrip(b"/") + b"/") for k in kept):
            kept.append(path)
    return kept
