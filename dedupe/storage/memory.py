"""In-memory backend for unit tests: same guarantees as the others, no durability."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from dedupe.errors import ObjectExists, ObjectNotFound
from dedupe.storage.base import Leftover, ObjectInfo, refuse_leftover, short_read, validate_name


class MemoryStorage:
    """Objects in a dict; thread-safe. A put is a dict assignment, so no leftovers exist."""

    max_connections = 1

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.objects: dict[str, bytes] = {}
        self.mtimes: dict[str, float] = {}  # the "storage clock": time.time() at each put
        self._lock = threading.Lock()

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            try:
                data = self.objects[validate_name(name)]
            except KeyError:
                raise ObjectNotFound(f"not found: {name}") from None
        end = len(data) if length is None else offset + length
        if end > len(data):
            raise short_read(name, offset, length)
        return data[offset:end]

    def put(self, name: str, data: bytes | bytearray | memoryview, exclusive: bool = False) -> None:
        with self._lock:
            if exclusive and validate_name(name) in self.objects:
                raise ObjectExists(f"{name} exists already")
            self.objects[validate_name(name)] = bytes(data)
            self.mtimes[name] = time.time()

    def delete(self, name: str) -> None:
        with self._lock:
            try:
                del self.objects[validate_name(name)]
                self.mtimes.pop(name, None)
            except KeyError:
                raise ObjectNotFound(f"not found: {name}") from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = sorted(
                (n, len(d), self.mtimes.get(n))
                for n, d in self.objects.items()
                if n.startswith(prefix)
            )
        for name, size, mtime in items:
            yield ObjectInfo(name, size, mtime)

    def stat(self, name: str) -> ObjectInfo:
        with self._lock:
            try:
                return ObjectInfo(
                    name, len(self.objects[validate_name(name)]), self.mtimes.get(name)
                )
            except KeyError:
                raise ObjectNotFound(f"not found: {name}") from None

    def exists(self, name: str) -> bool:
        with self._lock:
            return validate_name(name) in self.objects

    def free_space(self) -> int | None:
        return None

    def list_leftovers(self) -> Iterator[Leftover]:
        return iter(())

    def delete_leftover(self, leftover: Leftover) -> None:
        refuse_leftover(leftover)

    def close(self) -> None:
        pass
