"""Free-space forecasts: warn before a snapshot that is likely to fill the repository's disk.

The estimate is cheap and errs high, because a warning costs nothing and a full disk costs a
night's backup:
- with earlier snapshots of the same paths, the largest growth among the recent ones (a nightly
  run tends to add what the last nights added), with a margin;
- for a first snapshot, the size of the files to back up (a bounded stat walk), since nothing
  can be deduplicated against yet.
A stream from stdin with no history has no estimate. Backends that cannot tell their free space
(object stores) get no warning.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence

from dedupe.errors import DedupeError
from dedupe.repo import manifests
from dedupe.repo.repository import Repository
from dedupe.units import format_bytes

HISTORY = 10
MARGIN = 1.25
# Index files, manifests, packs still being filled: a floor under any estimate.
FIXED_BYTES = 4 << 20
WALK_SECONDS = 2.0


def estimate_snapshot_bytes(
    repo: Repository,
    paths: Sequence[bytes],
    stdin_mode: bool = False,
    walk_seconds: float = WALK_SECONDS,
    free: int | None = None,
) -> int | None:
    """Bytes the next snapshot of `paths` is likely to add at most, or None if unknown."""
    try:
        history = [s for s in manifests.load_all(repo) if tuple(s.paths) == tuple(paths)]
    except DedupeError:
        history = []
    growth = [_growth(s.summary) for s in history[-HISTORY:]]
    known = [g for g in growth if g is not None]
    if known:
        return int(max(known) * MARGIN) + FIXED_BYTES
    if stdin_mode:
        return None
    # The sources cannot hold more than their file systems' used space: when that already
    # fits, the stat walk (seconds on a big tree) is not needed.
    bound = used_bytes(paths)
    if bound is not None and free is not None and free >= bound + FIXED_BYTES:
        return bound + FIXED_BYTES
    return source_bytes(paths, walk_seconds) + FIXED_BYTES


def used_bytes(paths: Sequence[bytes]) -> int | None:
    """Used bytes of the file systems holding `paths` (each counted once), or None."""
    seen: set[int] = set()
    total = 0
    for path in paths:
        try:
            device = os.stat(path).st_dev
            if device in seen:
                continue
            seen.add(device)
            st = os.statvfs(path)
        except OSError:
            return None
        total += (st.f_blocks - st.f_bfree) * st.f_frsize
    return total


def _growth(summary: object) -> int | None:
    if not isinstance(summary, dict):
        return None
    for key in ("bytes_added", "raw_bytes_new"):
        value = summary.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def source_bytes(paths: Sequence[bytes], seconds: float = WALK_SECONDS) -> int:
    """Total size of the regular files under `paths` (what was counted within `seconds`)."""
    deadline = time.monotonic() + seconds
    total = 0
    stack = list(paths)
    while stack and time.monotonic() < deadline:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
        elif stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(path) as entries:
                    stack.extend(os.path.join(path, e.name) for e in entries)
            except OSError:
                continue
    return total


def preflight_warning(
    repo: Repository, paths: Sequence[bytes], stdin_mode: bool = False
) -> str | None:
    """A warning when the storage's free space is below the estimate, else None."""
    try:
        free = repo.storage.free_space()
    except DedupeError:
        return None
    if free is None:
        return None
    needed = estimate_snapshot_bytes(repo, paths, stdin_mode, free=free)
    if needed is None or free >= needed:
        return None
    return (
        f"the repository's disk has {format_bytes(free)} free, and this snapshot may need about "
        f"{format_bytes(needed)}. If the disk fills up, the snapshot stops cleanly (exit 13) and "
        "the repository stays intact; make room with 'dedupe forget POLICY' then 'dedupe gc'."
    )


def warn_if_low_space(
    repo: Repository,
    paths: Sequence[bytes],
    stdin_mode: bool,
    warn: Callable[[str], None],
) -> None:
    """`preflight_warning`, reported through `warn` (one call for the snapshot command)."""
    message = preflight_warning(repo, paths, stdin_mode)
    if message is not None:
        warn(message)
