"""Fault-injecting storage wrappers, for tests: each breaks exactly one thing, the rest delegates.

Compose them around any backend (usually `MemoryStorage` or `LocalStorage`), e.g.
`RetryingStorage(FailNthCall(MemoryStorage(), "put", n=2))`:
- `FailNthCall`: the nth call (1-based) of one operation, and `times - 1` more after it, raises a
  chosen error without reaching the backend (so a failed put stores nothing, as a real backend
  promises), or with `after=True` once the backend did the work (a lost reply);
  `DropConnection` is the same with `TransientStorageError`.
- `InterruptedList`: a listing that breaks after k names, as a connection lost mid-pagination.
- `TruncatedRead` / `FlippedByte`: reads that lose their last bytes or have one byte flipped, as
  damaged media or a buggy server would deliver them (the layers above must notice).
- `OutOfSpaceAfter`: puts raise `OutOfSpace` once the bytes written through the wrapper would pass a
  limit; deletes give the space back; `free_space()` reports what is left.
- `RecordingStorage`: remembers every call, to assert what a command did or did not do.

Thread-safe: the counters are locked, so wrappers work under parallel uploads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from dedupe.errors import OutOfSpace, StorageError, TransientStorageError
from dedupe.storage.base import Leftover, ObjectInfo, Storage

OPERATIONS = ("get", "put", "delete", "list", "stat", "exists", "free_space", "close")


class StorageWrapper:
    """Delegates every attribute to `inner`; subclasses define only what they change.

    The core operations (`OPERATIONS`) are reached through `__getattr__`, so `FailNthCall` and
    `RecordingStorage` can intercept them there; the rest of the protocol is spelled out.
    """

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.url = inner.url

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    @property
    def max_connections(self) -> int:
        return self.inner.max_connections

    def list_leftovers(self) -> Iterator[Leftover]:
        return self.inner.list_leftovers()

    def delete_leftover(self, leftover: Leftover) -> None:
        self.inner.delete_leftover(leftover)


ErrorFactory = Callable[[], BaseException]


class FailNthCall(StorageWrapper):
    """Calls n .. n+times-1 of operation `op` raise `error` (an exception or a factory of one).

    With `after`, the failing calls reach the backend first and raise afterwards.
    """

    def __init__(
        self,
        inner: Storage,
        op: str,
        n: int = 1,
        error: BaseException | ErrorFactory | None = None,
        times: int = 1,
        after: bool = False,
    ) -> None:
        if op not in OPERATIONS:
            raise ValueError(f"unknown storage operation {op!r}")
        super().__init__(inner)
        self.op = op
        self.n = n
        self.times = times
        self.after = after
        self.calls = 0
        self.failures = 0
        self._error = error or (lambda: TransientStorageError(f"injected failure of {op}"))
        self._lock = threading.Lock()

    def _make_error(self) -> BaseException:
        return self._error() if callable(self._error) else self._error

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self.inner, attr)
        if attr != self.op:
            return target

        def faulty(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
                fail = self.n <= self.calls < self.n + self.times
                self.failures += fail
            if fail and not self.after:
                raise self._make_error()
            result = target(*args, **kwargs)
            if fail:
                raise self._make_error()  # the call happened, its reply was "lost"
            return result

        return faulty


def DropConnection(inner: Storage, op: str, n: int = 1, times: int = 1) -> FailNthCall:  # noqa: N802
    """The connection "drops" on the nth call of `op`: a TransientStorageError, nothing stored."""
    return FailNthCall(
        inner,
        op,
        n,
        lambda: TransientStorageError(f"connection dropped during {op} (injected)"),
        times,
    )


class InterruptedList(StorageWrapper):
    """`list` raises TransientStorageError after yielding `after` names, `times` times."""

    def __init__(self, inner: Storage, after: int, times: int = 1) -> None:
        super().__init__(inner)
        self.after = after
        self.times = times

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for count, info in enumerate(self.inner.list(prefix)):
            if count == self.after and self.times > 0:
                self.times -= 1
                raise TransientStorageError("connection dropped while listing (injected)")
            yield info


class _ReadFault(StorageWrapper):
    """Damages the result of get calls n .. n+times-1 (all of them if times is None)."""

    def __init__(self, inner: Storage, n: int = 1, times: int | None = 1) -> None:
        super().__init__(inner)
        self.n = n
        self.times = times
        self.calls = 0
        self._lock = threading.Lock()

    def _hit(self) -> bool:
        with self._lock:
            self.calls += 1
            return self.calls >= self.n and (self.times is None or self.calls < self.n + self.times)

    def damage(self, data: bytes) -> bytes:
        """What a hit read returns instead of `data` (subclasses say how it is damaged)."""
        return data

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.get(name, offset, length)
        return self.damage(data) if self._hit() else data


class TruncatedRead(_ReadFault):
    """Reads come back `drop` bytes short, silently, as a server that lost the tail would."""

    def __init__(self, inner: Storage, n: int = 1, times: int | None = 1, drop: int = 1) -> None:
        super().__init__(inner, n, times)
        self.drop = drop

    def damage(self, data: bytes) -> bytes:
        return data[: max(0, len(data) - self.drop)]


class FlippedByte(_ReadFault):
    """Reads come back with one byte flipped (the last, or `position`)."""

    def __init__(
        self, inner: Storage, n: int = 1, times: int | None = 1, position: int = -1
    ) -> None:
        super().__init__(inner, n, times)
        self.position = position

    def damage(self, data: bytes) -> bytes:
        if not data:
            return data
        damaged = bytearray(data)
        damaged[self.position] ^= 0x01
        return bytes(damaged)


class OutOfSpaceAfter(StorageWrapper):
    """A disk that fills up: puts fail with OutOfSpace once `limit` new bytes would be passed."""

    def __init__(self, inner: Storage, limit: int) -> None:
        super().__init__(inner)
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def put(self, name: str, data: bytes | bytearray | memoryview, exclusive: bool = False) -> None:
        size = memoryview(data).nbytes
        with self._lock:
            if self.used + size > self.limit:
                raise OutOfSpace(f"out of disk space while writing {name} (injected)")
            self.used += size  # reserved before the write, as a file system allocates
        try:
            self.inner.put(name, data, exclusive)
        except BaseException:
            with self._lock:
                self.used -= size
            raise

    def delete(self, name: str) -> None:
        try:
            size = self.inner.stat(name).size
        except StorageError:
            size = 0
        self.inner.delete(name)
        with self._lock:
            self.used = max(0, self.used - size)

    def free_space(self) -> int | None:
        with self._lock:
            return max(0, self.limit - self.used)


class RecordingStorage(StorageWrapper):
    """Records (operation, name or prefix) for every protocol call, in order."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self.inner, attr)
        if attr not in OPERATIONS:
            return target

        def recorded(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls.append((attr, str(args[0]) if args else ""))
            return target(*args, **kwargs)

        return recorded

    def count(self, op: str) -> int:
        """How many calls of `op` were made."""
        with self._lock:
            return sum(1 for called, _ in self.calls if called == op)
