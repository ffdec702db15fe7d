"""RetryingStorage: retries what a backend calls transient, and nothing else.

Only `TransientStorageError` is retried, with exponential backoff and jitter, bounded both in
attempts and in total time, so a dead server turns into a clear error within about a minute instead
of a hang. Permanent errors, `ObjectNotFound`, `ObjectExists` and `OutOfSpace` pass straight
through. A retried `get` re-reads the whole object or range (never stitches partial reads), and a
retried `list` starts over and skips names already yielded.

Two ambiguities of a retried write are resolved here, where the history is known:
- an exclusive `put` whose earlier attempt failed transiently may have succeeded after all; if the
  retry then meets `ObjectExists`, the stored bytes are compared with ours and equal bytes count as
  success (with content-addressed names that is the common case);
- a `delete` whose earlier attempt failed transiently and whose retry meets `ObjectNotFound` counts
  as done.

What it tells: each retry is logged at WARNING ("<url>: get data/.. failed (...); retrying in
1.2 s, attempt 2 of 5"), as is a single request that took longer than `slow_after` seconds, so
a flaky or slow link shows on stderr at the CLI's default level instead of only when it gives
up. The URL in a message is always `redact_url`'s (no password), and no object's content is
logged.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from dedupe.errors import ObjectExists, ObjectNotFound, StorageError, TransientStorageError
from dedupe.storage.base import Leftover, ObjectInfo, Storage, redact_url

T = TypeVar("T")
log = logging.getLogger(__name__)


class RetryingStorage:
    """Wraps a backend; composes with any other wrapper (it only needs the protocol)."""

    def __init__(
        self,
        inner: Storage,
        attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        max_elapsed: float = 60.0,
        *,
        slow_after: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_elapsed = max_elapsed
        self.slow_after = slow_after
        self._sleep = sleep
        self._clock = clock

    def __getattr__(self, attr: str) -> object:
        # A backend's own extras beyond the protocol (list_temporary, list_uploads) pass through.
        return getattr(self.inner, attr)

    @property
    def max_connections(self) -> int:
        return self.inner.max_connections

    def _delays(self) -> Iterator[float]:
        """Backoff delays between attempts; stops when attempts or time run out."""
        start = self._clock()
        for attempt in range(self.attempts - 1):
            delay = min(self.max_delay, self.base_delay * 2**attempt)
            delay *= random.uniform(0.5, 1.0)  # jitter: parallel workers do not retry in lockstep
            if self._clock() - start + delay > self.max_elapsed:
                return
            yield delay

    def _retry(self, what: str, op: Callable[[int], T]) -> T:
        """Run op(attempt_number) until it succeeds, fails permanently, or retries run out."""
        delays = self._delays()
        attempt = 0
        while True:
            started = self._clock()
            try:
                result = op(attempt)
            except TransientStorageError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise TransientStorageError(
                        f"{exc} (gave up after {attempt + 1} attempts)"
                    ) from None
                self._log_retry(what, exc, delay, attempt + 2)
                self._sleep(delay)
                attempt += 1
            else:
                self._log_if_slow(what, self._clock() - started)
                return result

    def _log_retry(self, what: str, exc: Exception, delay: float, next_attempt: int) -> None:
        log.warning(
            "%s: %s failed (%s); retrying in %.1f s, attempt %d of %d",
            redact_url(self.url),
            what,
            exc,
            delay,
            next_attempt,
            self.attempts,
        )

    def _log_if_slow(self, what: str, seconds: float) -> None:
        if seconds >= self.slow_after:
            log.warning(
                "%s: the storage is slow: %s took %.0f s (a busy or failing link or disk?)",
                redact_url(self.url),
                what,
                seconds,
            )

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._retry(f"get {name}", lambda _a: self.inner.get(name, offset, length))

    def put(self, name: str, data: bytes | bytearray | memoryview, exclusive: bool = False) -> None:
        def op(attempt: int) -> None:
            try:
                self.inner.put(name, data, exclusive)
            except ObjectExists:
                if attempt == 0 or not self._holds(name, data):
                    raise
                # An earlier attempt that "failed" had in fact stored our bytes.

        self._retry(f"put {name}", op)

    def _holds(self, name: str, data: bytes | bytearray | memoryview) -> bool:
        try:
            return self._retry(f"get {name}", lambda _a: self.inner.get(name)) == bytes(data)
        except StorageError:
            return False

    def delete(self, name: str) -> None:
        def op(attempt: int) -> None:
            try:
                self.inner.delete(name)
            except ObjectNotFound:
                if attempt == 0:
                    raise

        self._retry(f"delete {name}", op)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        seen: set[str] = set()
        delays = self._delays()
        attempt = 1
        while True:
            try:
                for info in self.inner.list(prefix):
                    if info.name not in seen:
                        seen.add(info.name)
                        yield info
                return
            except TransientStorageError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise
                attempt += 1
                self._log_retry(f"list {prefix or '/'}", exc, delay, attempt)
                self._sleep(delay)

    def stat(self, name: str) -> ObjectInfo:
        return self._retry(f"stat {name}", lambda _a: self.inner.stat(name))

    def exists(self, name: str) -> bool:
        return self._retry(f"exists {name}", lambda _a: self.inner.exists(name))

    def free_space(self) -> int | None:
        return self._retry("free space", lambda _a: self.inner.free_space())

    def list_leftovers(self) -> Iterator[Leftover]:
        # Not retried: a listing cut off half-way would be retried by its next caller (gc, check).
        return self.inner.list_leftovers()

    def delete_leftover(self, leftover: Leftover) -> None:
        self.inner.delete_leftover(leftover)

    def close(self) -> None:
        self.inner.close()
