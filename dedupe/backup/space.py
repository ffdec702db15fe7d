"""Free-space forecasts: warn before a snapshot that is likely to fill the repository's disk.

The estimate is cheap and errs high, because a warning costs nothing and a full disk costs a
night's backup:
- with earlier snapshots of the same paths, the largest growth among the recent ones (a nightly
  run tends to add what the last nights added), with a margin;
- for a first snapshot, the size of the files to back up (a bounded stat walk), since nothing
  can be deduplicated against yet. `SourceSize` runs that walk in a thread from before the
  repository is unlocked, so it overlaps the key derivation (Argon2id runs without the GIL)
  instead of delaying the snapshot's own walk.
A stream from stdin with no history has no estimate. Backends that cannot tell their free space
(object stores) get no warning.
"""

from __future__ import annotations

import os
import stat
import threading
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
    estimate = _estimate(repo, paths, stdin_mode, free)
    return source_bytes(paths, walk_seconds) + FIXED_BYTES if estimate == _COUNT else estimate


_COUNT = -1  # the estimate is the size of the files under the sources: they must be counted


def _estimate(
    repo: Repository, paths: Sequence[bytes], stdin_mode: bool, free: int | None
) -> int | None:
    """`estimate_snapshot_bytes` where it needs no walk of the sources; else _COUNT."""
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
    return _COUNT


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


def source_bytes(
    paths: Sequence[bytes], seconds: float = WALK_SECONDS, stop: threading.Event | None = None
) -> int:
    """Total size of the regular files under `paths` (what was counted within `seconds`, or
    until `stop` is set)."""
    deadline = time.monotonic() + seconds
    total = 0
    stack = list(paths)
    while stack and time.monotonic() < deadline and not (stop is not None and stop.is_set()):
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


class SourceSize:
    """`source_bytes` of the sources, counted in a thread from now on (a daemon: it never
    keeps the process alive, and stops within WALK_SECONDS anyway)."""

    def __init__(self, paths: Sequence[bytes], seconds: float = WALK_SECONDS) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._total: int | None = None
        self._then: Callable[[int], None] | None = None
        self._thread = threading.Thread(
            target=self._count, args=(list(paths), seconds), name="source-size", daemon=True
        )
        self._thread.start()

    def _count(self, paths: list[bytes], seconds: float) -> None:
        total = source_bytes(paths, seconds, self._stop)
        with self._lock:
            self._total = total
            then = self._then
        if then is not None:
            then(total)

    def then(self, callback: Callable[[int], None]) -> None:
        """Call `callback` with the total when the count is done (at once if it is; else in
        the counting thread)."""
        with self._lock:
            total = self._total
            if total is None:
                self._then = callback
        if total is not None:
            callback(total)

    def result(self) -> int:
        """The bytes counted (waits for the count and its callback, at most the time limit)."""
        self._thread.join()
        assert self._total is not None
        return self._total

    def cancel(self) -> None:
        """Not needed after all: stop counting."""
        self._stop.set()


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
    return _message(free, estimate_snapshot_bytes(repo, paths, stdin_mode, free=free))


def _message(free: int, needed: int | None) -> str | None:
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
    counted: SourceSize | None = None,
) -> None:
    """`preflight_warning`, reported through `warn` (one call for the snapshot command).

    With `counted` (the sources' size, being counted in a thread since before the repository
    was unlocked), a first snapshot does not wait for the count: the warning, if any, comes
    through `warn` from the counting thread, within WALK_SECONDS of its start, while the
    snapshot runs (which stops cleanly if the disk does fill up). The caller joins the count
    (`counted.result()`) before it reports the snapshot, so the warning comes first.
    """
    if counted is None:
        message = preflight_warning(repo, paths, stdin_mode)
        if message is not None:
            warn(message)
        return
    try:
        free = repo.storage.free_space()
    except DedupeError:
        free = None
    estimate = None if free is None else _estimate(repo, paths, stdin_mode, free)
    if free is None or estimate != _COUNT:
        counted.cancel()
        message = None if free is None else _message(free, estimate)
        if message is not None:
            warn(message)
        return
    known_free = free

    def warn_when_counted(total: int) -> None:
        message = _message(known_free, total + FIXED_BYTES)
        if message is not None:
            warn(message)

    counted.then(warn_when_counted)
