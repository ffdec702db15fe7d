"""A shared lock for commands that only read but take long: restore and mount.

Why: gc deletes packs under its exclusive lock. A restore or a mount that holds no lock can have
a pack vanish under it and would then report the backup as damaged when it is not, the worst
thing to tell an office in the middle of a recovery. With a shared lock, gc waits (exit 11 with
the usual message) and snapshot, copy and check still run beside the restore, as with restic.

Reading must still work where nothing can be written: a drive mounted read-only, a write-protected
medium, a repository disk that is full. There the lock cannot be written; the command goes on
without it and says so, because refusing a restore from a write-protected drive helps nobody.
A lock held by a running gc is different: that is exit 11, since the gc is deleting packs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from dedupe.errors import OutOfSpace, StorageError
from dedupe.repo.repository import Repository


@contextlib.contextmanager
def shared_lock(repo: Repository, warn: Callable[[str], None], doing: str) -> Iterator[None]:
    """Hold a shared lock on `repo` for the block, or warn and go on when none can be written.

    `doing` completes the warning ("the restore", "the mount"). RepositoryLocked (a gc holds
    the exclusive lock) is raised as it is: exit 11."""
    try:
        lock = repo.lock(exclusive=False)
    except (OutOfSpace, StorageError) as exc:
        warn(
            f"could not write a lock into the repository ({exc}); {doing} goes on without "
            "one. Do not run 'dedupe gc' or 'dedupe forget' on this repository until it ends"
        )
        yield
        return
    with lock:
        yield
