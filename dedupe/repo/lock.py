"""Repository locks: shared for writers that only add (snapshot), exclusive for deleters (gc).

A lock is a sealed object under `locks/`. Acquire: look for conflicting live locks; write ours;
look again (two processes may have written at once) and back off if a conflict appeared.
A lock is stale when its process is gone (same host: pid absent or started at another time) or,
for another host, when it has not been refreshed for STALE_AFTER seconds. Stale locks never block;
`dedupe unlock` deletes them.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dedupe import codec
from dedupe.crypto.seal import Sealer
from dedupe.errors import DedupeError, FormatError, ObjectNotFound, RepositoryLocked
from dedupe.storage.base import Storage

REFRESH_EVERY = 300.0
STALE_AFTER = 1800.0


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if it is not running."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class LockInfo:
    """A decoded lock object."""

    name: str
    host: str
    pid: int
    pid_start: int
    time: float
    exclusive: bool

    def is_stale(self, now: float, host: str) -> bool:
        if self.host == host:
            start = process_start_time(self.pid)
            return start is None or (self.pid_start != 0 and start != self.pid_start)
        return now - self.time > STALE_AFTER

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        age = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return f"{kind} lock by pid {self.pid} on {self.host} since {age}"


def _encode(sealer: Sealer, host: str, pid: int, start: int, exclusive: bool) -> bytes:
    return sealer.seal(
        codec.pack(
            {
                "v": codec.FORMAT_VERSION,
                "host": host,
                "pid": pid,
                "pid_start": start,
                "time": time.time(),
                "exclusive": exclusive,
            }
        )
    )


def decode_lock(name: str, data: bytes, sealer: Sealer) -> LockInfo:
    what = f"lock {name}"
    obj = codec.check_version(codec.unpack(sealer.open(data, what), what), what)
    pid = codec.field(obj, "pid", int, what)
    pid_start = codec.field(obj, "pid_start", int, what)
    when = float(codec.field(obj, "time", (int, float), what))
    # describe() formats the time and is_stale() reads /proc/<pid>: keep both in range
    # (a NaN or a year-300000 time would raise there, not here).
    if not (0 <= pid < 2**32 and 0 <= pid_start < 2**64 and 0.0 <= when < 2.0**36):
        raise FormatError(f"{what}: pid or time out of range")
    return LockInfo(
        name,
        codec.field(obj, "host", str, what),
        pid,
        pid_start,
        when,
        codec.field(obj, "exclusive", bool, what),
    )


def list_locks(storage: Storage, sealer: Sealer) -> tuple[list[LockInfo], list[str]]:
    """(decodable locks, names of undecodable lock objects)."""
    locks, broken = [], []
    for info in storage.list("locks/"):
        try:
            locks.append(decode_lock(info.name, storage.get(info.name), sealer))
        except ObjectNotFound:
            continue
        except DedupeError:
            broken.append(info.name)
    return locks, broken


class Lock:
    """A held lock; release it (or use as a context manager). Refreshes itself in a thread."""

    def __init__(self, storage: Storage, sealer: Sealer, name: str, exclusive: bool) -> None:
        self.storage = storage
        self.sealer = sealer
        self.name = name
        self.exclusive = exclusive
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="lock-refresh", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            try:
                pid = os.getpid()
                data = _encode(
                    self.sealer,
                    socket.gethostname(),
                    pid,
                    process_start_time(pid) or 0,
                    self.exclusive,
                )
                self.storage.put(self.name, data)
            except DedupeError:
                pass  # the next refresh tries again; staleness takes 30 minutes

    def release(self) -> None:
        self._stop.set()
        try:
            self.storage.delete(self.name)
        except DedupeError:
            # Gone already, or the storage is unreachable: then the lock stays behind, is seen
            # as stale once this process has ended, and must not hide the error that got us
            # here (a server that died mid-snapshot).
            pass

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(
    storage: Storage,
    sealer: Sealer,
    exclusive: bool,
    wait: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Lock:
    """Take a lock or raise RepositoryLocked (after waiting up to `wait` seconds)."""
    host = socket.gethostname()
    pid = os.getpid()
    start = process_start_time(pid) or 0
    deadline = time.monotonic() + wait
    attempts = 0
    while True:
        attempts += 1
        blocker = _conflict(storage, sealer, exclusive, host, None)
        if blocker is None:
            name = f"locks/{secrets.token_hex(16)}"
            storage.put(name, _encode(sealer, host, pid, start, exclusive))
            blocker = _conflict(storage, sealer, exclusive, host, name)
            if blocker is None:
                return Lock(storage, sealer, name, exclusive)
            try:
                storage.delete(name)
            except ObjectNotFound:
                pass
            if attempts < 6:  # a race with another locker: back off and try again
                sleep(random.uniform(0.05, 0.3) * attempts)
                continue
        if time.monotonic() >= deadline:
            raise RepositoryLocked(
                f"the repository is locked ({blocker}); wait for that process to finish, or if "
                "it died, run 'dedupe unlock'"
            )
        sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def _conflict(
    storage: Storage, sealer: Sealer, exclusive: bool, host: str, own: str | None
) -> str | None:
    locks, broken = list_locks(storage, sealer)
    now = time.time()
    for lock in locks:
        if lock.name == own or lock.is_stale(now, host):
            continue
        if exclusive or lock.exclusive:
            return lock.describe()
    if broken and exclusive:
        return f"an unreadable lock object {broken[0]}"
    return None


def remove_stale(storage: Storage, sealer: Sealer) -> list[str]:
    """Delete stale and unreadable locks; return descriptions of what was removed."""
    host = socket.gethostname()
    now = time.time()
    locks, broken = list_locks(storage, sealer)
    removed = []
    for lock in locks:
        if lock.is_stale(now, host):
            try:
                storage.delete(lock.name)
                removed.append(lock.describe())
            except ObjectNotFound:
                pass
    for name in broken:
        try:
            storage.delete(name)
            removed.append(f"unreadable lock object {name}")
        except ObjectNotFound:
            pass
    return removed
