"""The space reserve: a small object of random bytes that maintenance may delete to get going.

On a disk with zero bytes free even taking a lock fails, since a lock object needs a block
(kopia#4419: a full repository could not even delete a snapshot). `init` writes `reserve`; an
exclusive locker (forget, gc) that meets `OutOfSpace` deletes it and tries again; gc writes it
back once it has freed space. Snapshots never touch it, so it is there when a full disk stops a
backup. The bytes are random, so they look like every other ciphertext object and leak nothing.
"""

from __future__ import annotations

import os

from dedupe.errors import DedupeError, ObjectNotFound
from dedupe.storage.base import Storage

RESERVE_NAME = "reserve"
RESERVE_SIZE = 1 << 20
# Write the reserve back only when this much would still be free afterwards: re-creating it must
# never be what fills a disk again.
RESTORE_HEADROOM = 16 << 20


def ensure(storage: Storage, headroom: int = RESTORE_HEADROOM) -> bool:
    """Write the reserve if it is missing and there is room. True if it exists afterwards."""
    try:
        if storage.exists(RESERVE_NAME):
            return True
        free = storage.free_space()
        if free is not None and free < RESERVE_SIZE + headroom:
            return False
        storage.put(RESERVE_NAME, os.urandom(RESERVE_SIZE))
        return True
    except DedupeError:
        return False  # best effort: a missing reserve only matters on a full disk


def release(storage: Storage) -> bool:
    """Delete the reserve to make room; True if it was there."""
    try:
        storage.delete(RESERVE_NAME)
        return True
    except ObjectNotFound:
        return False
