"""The real `dedupe` CLI (cheap KDF, like tests/cli_entry.py) with a test-only hook that changes
the source tree at one exact point: after the walk listed a file (lstat) and before the file is
opened. It lives under tests/: users cannot reach it.

- WALK_TEST_FIFO=PATH[:PATH...]: replace each PATH by a FIFO (no writer ever comes).
- WALK_TEST_REPLACE=PATH[:PATH...]: replace each PATH by another regular file (a new inode).
- WALK_TEST_NO_HELPER=1: no helper process; files of 1 MiB or more go to the read-ahead thread
  (so that lane meets the swap), instead of the helper process (whose parent swaps the file
  just before it hands the file over).
"""

import os
import sys

import tests.cli_entry  # noqa: F401  (cheap KDF for new keys)
from dedupe.backup import largefiles, session
from dedupe.backup.filestore import FileStore
from dedupe.backup.offload import Offloader
from dedupe.cli.main import main


def _paths(variable: str) -> set[bytes]:
    return {os.fsencode(p) for p in os.environ.get(variable, "").split(os.pathsep) if p}


FIFOS = _paths("WALK_TEST_FIFO")
REPLACE = _paths("WALK_TEST_REPLACE")
_done: set[bytes] = set()


def _swap(path: bytes) -> None:
    if path in _done:
        return
    if path in FIFOS:
        _done.add(path)
        os.unlink(path)
        os.mkfifo(path)
    elif path in REPLACE:
        _done.add(path)
        with open(path + b".new", "wb") as f:
            f.write(b"written after the walk listed the folder")
        os.replace(path + b".new", path)


_store_file = FileStore.store
_store = Offloader.store


def store_file(self, path, name, st, stats):
    _swap(path)
    return _store_file(self, path, name, st, stats)


def store(self, path, name, st, report, warn):
    _swap(path)
    return _store(self, path, name, st, report, warn)


FileStore.store = store_file
Offloader.store = store
if os.environ.get("WALK_TEST_NO_HELPER"):
    session.helper_for = lambda repo: None
    largefiles.READ_AHEAD_MIN = 1 << 20

if __name__ == "__main__":
    sys.exit(main())
