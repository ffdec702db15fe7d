"""Repository locks: shared for writers that only add (snapshot), exclusive for deleters (gc).

A lock is a sealed object under `locks/`. Acquire: note the lock objects present; write ours;
read them all and judge them (by the storage's clock, see below); if a live one conflicts, delete
ours, and back off and retry if it appeared meanwhile (a race with another locker) or give up.

When is another lock stale (its holder is gone)? Getting this wrong lets gc delete the packs of
a snapshot in progress, so a lock is judged two ways only:
- by its process, only when it was written in our own pid space: same host name, same boot
  (Linux `boot_id`) and same pid namespace. Then it is stale when that pid is not running or was
  started at another time. Two containers may share a host name and a pid; another boot reuses
  pids: neither may be judged by pid. Other systems record no boot or namespace: never by pid.
- otherwise by age: stale when the object was not rewritten (refreshed) for STALE_AFTER seconds.
  Age is measured by one clock, the storage's: the mtime of an object we have just written (our
  lock, or a probe) minus the mtime of the other lock object. Two machines' clocks are never
  compared; the time recorded inside the lock is used only where a backend tells no mtime.

A held lock refreshes itself every REFRESH_EVERY seconds and notices if its object vanished or
changed; `Lock.verify()` lets a writer check, right before it commits, that its lock still stands.

The OS-specific answers (a process's start time, the boot id, the pid namespace) come from
`dedupe.platform`; where it has no boot id or pid namespace (macOS has no pid namespaces), locks
are judged by age only.
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
from dedupe.errors import DedupeError, FormatError, ObjectNotFound, OutOfSpace, RepositoryLocked
from dedupe.platform import boot_id, pid_namespace, process_start_time
from dedupe.storage.base import Storage

REFRESH_EVERY = 300.0
STALE_AFTER = 1800.0
VERIFY_RECHECK = 2.0  # a conflicting lock seen by verify() must still be there this much later
_MAX_ID = 256  # longest boot id / pid namespace text a lock may carry


class LockLost(RepositoryLocked):
    """This process's lock on the repository is gone, replaced, or overridden (exit 11)."""


@dataclass(frozen=True)
class MachineId:
    """Where a pid means one process: a host name, and on Linux a boot and a pid namespace."""

    host: str
    boot_id: str = ""
    pid_ns: str = ""

    def shares_pids_with(self, host: str, boot_id: str, pid_ns: str) -> bool:
        """True only if a pid recorded there names the same process here (all three match)."""
        return bool(
            self.boot_id
            and self.pid_ns
            and (host, boot_id, pid_ns) == (self.host, self.boot_id, self.pid_ns)
        )


def this_machine() -> MachineId:
    """Our identity; boot id and pid namespace where the system has them (both: Linux)."""
    return MachineId(socket.gethostname(), boot_id()[:_MAX_ID], pid_namespace()[:_MAX_ID])


# --- lock objects --------------------------------------------------------------------------


@dataclass(frozen=True)
class LockInfo:
    """A decoded lock object; `mtime` is its listing's mtime by the storage's clock (or None).

    `boot_id` and `pid_ns` are '' in locks written by older versions or on other systems."""

    name: str
    host: str
    pid: int
    pid_start: int
    time: float
    exclusive: bool
    boot_id: str = ""
    pid_ns: str = ""
    mtime: float | None = None

    def judged_by_pid(self, here: MachineId) -> bool:
        """True if our pids are its pids (see the module docstring)."""
        return here.shares_pids_with(self.host, self.boot_id, self.pid_ns)

    def age(self, now: float, storage_now: float | None) -> float:
        """Seconds since it was last written: by the storage's clock when we have one reading
        of it (`storage_now`) and the object's mtime, else by the recorded (writer's) time."""
        if storage_now is not None and self.mtime is not None:
            return storage_now - self.mtime
        return now - self.time

    def is_stale(
        self,
        now: float,
        host: str,
        *,
        here: MachineId | None = None,
        storage_now: float | None = None,
    ) -> bool:
        """Is its holder gone? `now` is our clock (used only without `storage_now`), `host` our
        host name, `here` our machine (default: `this_machine()`), `storage_now` the mtime of an
        object we have just written (our own lock, or a probe)."""
        here = here or this_machine()
        if here.host != host:
            here = MachineId(host)  # the caller speaks for another host: age only
        if self.judged_by_pid(here):
            start = process_start_time(self.pid)
            return start is None or (self.pid_start != 0 and start != self.pid_start)
        return self.age(now, storage_now) > STALE_AFTER

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        age = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return f"{kind} lock by pid {self.pid} on {self.host} since {age}"


def encode_lock(
    sealer: Sealer,
    host: str,
    pid: int,
    start: int,
    exclusive: bool,
    *,
    machine: MachineId | None = None,
    when: float | None = None,
) -> bytes:
    """A sealed lock object; boot id and pid namespace are this machine's unless given (public
    so tests can plant the lock of another process or machine)."""
    machine = machine or this_machine()
    return sealer.seal(
        codec.pack(
            {
                "v": codec.FORMAT_VERSION,
                "host": host,
                "pid": pid,
                "pid_start": start,
                "time": time.time() if when is None else when,
                "exclusive": exclusive,
                "boot_id": machine.boot_id,
                "pid_ns": machine.pid_ns,
            }
        )
    )


def decode_lock(name: str, data: bytes, sealer: Sealer, mtime: float | None = None) -> LockInfo:
    what = f"lock {name}"
    obj = codec.check_version(codec.unpack(sealer.open(data, what), what), what)
    pid = codec.field(obj, "pid", int, what)
    pid_start = codec.field(obj, "pid_start", int, what)
    when = float(codec.field(obj, "time", (int, float), what))
    # describe() formats the time and is_stale() asks about the pid: keep both in range
    # (a NaN or a year-300000 time would raise there, not here).
    if not (0 <= pid < 2**32 and 0 <= pid_start < 2**64 and 0.0 <= when < 2.0**36):
        raise FormatError(f"{what}: pid or time out of range")
    # Locks written before these fields existed decode with '' (judged by age only).
    boot_id = codec.opt_field(obj, "boot_id", str, what, "")
    pid_ns = codec.opt_field(obj, "pid_ns", str, what, "")
    if len(boot_id) > _MAX_ID or len(pid_ns) > _MAX_ID:
        raise FormatError(f"{what}: machine identity too long")
    return LockInfo(
        name,
        codec.field(obj, "host", str, what),
        pid,
        pid_start,
        when,
        codec.field(obj, "exclusive", bool, what),
        boot_id,
        pid_ns,
        mtime,
    )


def list_locks(storage: Storage, sealer: Sealer) -> tuple[list[LockInfo], list[str]]:
    """(decodable locks, names of undecodable lock objects); each with its listing's mtime."""
    locks, broken = [], []
    for info in storage.list("locks/"):
        try:
            locks.append(decode_lock(info.name, storage.get(info.name), sealer, info.mtime))
        except ObjectNotFound:
            continue
        except DedupeError:
            broken.append(info.name)
    return locks, broken


def storage_clock(storage: Storage, name: str) -> float | None:
    """The storage's clock as of the last write of `name` (an object we wrote: our own lock)."""
    try:
        return storage.stat(name).mtime
    except ObjectNotFound:
        return None


def _our_lock_data(sealer: Sealer, here: MachineId, exclusive: bool) -> bytes:
    pid = os.getpid()
    return encode_lock(
        sealer, here.host, pid, process_start_time(pid) or 0, exclusive, machine=here
    )


# --- a held lock -----------------------------------------------------------------------------


class Lock:
    """A held lock; release it (or use as a context manager). Refreshes itself in a thread.

    `data` is the object as written by `acquire` (to recognise it later); `lost` says why the
    lock no longer stands, once the refresh thread or `verify` found out.
    """

    def __init__(
        self,
        storage: Storage,
        sealer: Sealer,
        name: str,
        exclusive: bool,
        data: bytes | None = None,
        *,
        refresh_every: float = REFRESH_EVERY,
    ) -> None:
        self.storage = storage
        self.sealer = sealer
        self.name = name
        self.exclusive = exclusive
        self.lost: str | None = None
        self._here = this_machine()
        # What our object may hold: what we wrote, and what a write that "failed" may have left.
        self._ours: set[bytes] = {data} if data is not None else set()
        self._io = threading.Lock()  # one refresh or verify at a time
        self._stop = threading.Event()
        self._refresh_every = refresh_every
        self._thread = threading.Thread(target=self._refresh, name="lock-refresh", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(self._refresh_every):
            self.refresh()
            if self.lost is not None:
                return  # never recreate it: a gc may already be deleting what we wrote

    def refresh(self) -> None:
        """Rewrite our lock object (its mtime moves), unless it vanished or was replaced."""
        with self._io:
            if self.lost is not None or self._stop.is_set():
                return
            try:
                self._check_own()
            except LockLost:
                return
            except DedupeError:
                return  # unreachable storage: the next refresh tries again
            data = _our_lock_data(self.sealer, self._here, self.exclusive)
            try:
                self.storage.put(self.name, data)
                self._ours = {data}
            except DedupeError:
                self._ours.add(data)  # staleness takes 30 minutes; the next one tries again

    def _check_own(self) -> None:
        """Raise LockLost (and remember why) if our object is gone or not ours any more."""
        try:
            current = self.storage.get(self.name)
        except ObjectNotFound:
            self.lost = (
                f"its lock object {self.name} was deleted by another process (one that judged "
                "it stale, or 'dedupe unlock')"
            )
            raise LockLost(self._lost_message()) from None
        if self._ours and current not in self._ours:
            self.lost = f"its lock object {self.name} was replaced by another process"
            raise LockLost(self._lost_message())

    def _lost_message(self) -> str:
        return (
            f"this process lost its lock on the repository: {self.lost}. A gc may be deleting "
            "data it was writing, so it stops here without saving; run it again. The "
            "repository is unharmed (what was stored is kept or cleaned up by the next gc)"
        )

    def verify(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Raise LockLost (exit 11) unless our lock still stands: our object is there and
        ours, and no live exclusive lock of another process exists. Call it right before
        writing what makes new data reachable (a snapshot's index and manifest)."""
        with self._io:
            if self.lost is not None:
                raise LockLost(self._lost_message())
            self._check_own()
        blocker = self._live_exclusive()
        if blocker is not None:
            # An exclusive locker that raced us writes its object, sees ours and deletes its
            # own within moments: only one that stays is a real conflict.
            sleep(VERIFY_RECHECK)
            blocker = self._live_exclusive()
        if blocker is not None:
            self.lost = f"another process holds the repository exclusively ({blocker})"
            raise LockLost(self._lost_message())

    def _live_exclusive(self) -> str | None:
        storage_now = storage_clock(self.storage, self.name)
        locks, _broken = list_locks(self.storage, self.sealer)
        now = time.time()
        for lock in locks:
            if lock.name == self.name or not lock.exclusive:
                continue
            if not lock.is_stale(now, self._here.host, here=self._here, storage_now=storage_now):
                return lock.describe()
        return None

    def release(self) -> None:
        self._stop.set()
        with self._io:
            if self.lost is not None:
                return  # not ours any more: never delete what may be another's
            try:
                self.storage.delete(self.name)
            except DedupeError:
                # Gone already, or the storage is unreachable: then the lock stays behind, is
                # seen as stale once this process has ended, and must not hide the error that
                # got us here (a server that died mid-snapshot).
                pass

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- taking and clearing locks ---------------------------------------------------------------


def acquire(
    storage: Storage,
    sealer: Sealer,
    exclusive: bool,
    wait: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Lock:
    """Take a lock or raise RepositoryLocked (after waiting up to `wait` seconds)."""
    here = this_machine()
    deadline = time.monotonic() + wait
    attempts = 0
    while True:
        attempts += 1
        present = {info.name for info in storage.list("locks/")}
        name = f"locks/{secrets.token_hex(16)}"
        data = _our_lock_data(sealer, here, exclusive)
        storage.put(name, data)
        try:
            # Our object's mtime is the storage's "now": other locks' ages are measured by it.
            blocker = _conflict(
                storage, sealer, exclusive, here, name, storage_clock(storage, name)
            )
        except BaseException:
            _delete_quietly(storage, name)
            raise
        if blocker is None:
            return Lock(storage, sealer, name, exclusive, data)
        _delete_quietly(storage, name)
        blocker_name, text = blocker
        if blocker_name not in present and attempts < 6:
            # It appeared while we took ours: a race with another locker. Back off, retry.
            sleep(random.uniform(0.05, 0.3) * attempts)
            continue
        if time.monotonic() >= deadline:
            raise RepositoryLocked(
                f"the repository is locked ({text}); wait for that process to finish, or if "
                "it died, run 'dedupe unlock'"
            )
        sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def _delete_quietly(storage: Storage, name: str) -> None:
    try:
        storage.delete(name)
    except DedupeError:
        pass  # gone, or unreachable: a lock of ours left behind turns stale with this process


def _conflict(
    storage: Storage,
    sealer: Sealer,
    exclusive: bool,
    here: MachineId,
    own: str,
    storage_now: float | None,
) -> tuple[str, str] | None:
    """(name, description) of a live lock that conflicts with ours, or None."""
    locks, broken = list_locks(storage, sealer)
    now = time.time()
    for lock in locks:
        if lock.name == own:
            continue
        if lock.is_stale(now, here.host, here=here, storage_now=storage_now):
            continue
        if exclusive or lock.exclusive:
            return lock.name, lock.describe()
    if broken and exclusive:
        return broken[0], f"an unreadable lock object {broken[0]}"
    return None


def remove_stale(storage: Storage, sealer: Sealer) -> list[str]:
    """Delete stale and unreadable locks; return descriptions of what was removed.

    The storage's clock is read from a probe: a shared lock object written and deleted here.
    If even that cannot be written (a full disk), only locks judged by their pid are removed.
    """
    here = this_machine()
    probe = f"locks/{secrets.token_hex(16)}"
    try:
        storage.put(probe, _our_lock_data(sealer, here, exclusive=False))
        storage_now = storage_clock(storage, probe)
        age_known = True
    except OutOfSpace:
        storage_now, age_known = None, False
    try:
        locks, broken = list_locks(storage, sealer)
    finally:
        if age_known:
            _delete_quietly(storage, probe)
    now = time.time()
    removed = []
    for lock in locks:
        if lock.name == probe or not (age_known or lock.judged_by_pid(here)):
            continue
        if lock.is_stale(now, here.host, here=here, storage_now=storage_now):
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
