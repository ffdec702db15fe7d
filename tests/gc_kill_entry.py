"""The real `dedupe` CLI (cheap KDF, like tests/cli_entry.py) with test-only hooks on the local
backend, for killing gc (or a snapshot, whose packs gc must then keep) at exact points. It
lives under tests/: users cannot reach these hooks.

- GC_TEST_KILL_AT=N, GC_TEST_KILL_WHEN=before|after: SIGKILL this process right before or right
  after the Nth mutating storage call (put or delete), counting from the start of the process.
- GC_TEST_COUNT_FILE=PATH: write the number of mutating calls made, at each call.
- GC_TEST_SLOW=SECONDS: sleep after each mutating call (to widen windows for concurrency tests).
- GC_TEST_PAUSE_FILE=PATH: after each mutating call, wait while PATH exists (at most 10 minutes),
  so a test can act at a known point (e.g. while gc surely holds its lock) on any machine.
- GC_TEST_FREE=BYTES: report this much free space (forces gc's full-disk ordering).
"""

import os
import signal
import sys
import time

import tests.cli_entry  # noqa: F401  (cheap KDF for new keys)
from dedupe.cli.main import main
from dedupe.storage.local import LocalStorage

KILL_AT = int(os.environ.get("GC_TEST_KILL_AT", "0"))
KILL_AFTER = os.environ.get("GC_TEST_KILL_WHEN", "before") == "after"
COUNT_FILE = os.environ.get("GC_TEST_COUNT_FILE")
SLOW = float(os.environ.get("GC_TEST_SLOW", "0"))
PAUSE_FILE = os.environ.get("GC_TEST_PAUSE_FILE")
FREE = os.environ.get("GC_TEST_FREE")
_calls = 0


def _hook(method_name: str) -> None:
    original = getattr(LocalStorage, method_name)

    def hooked(self, *args, **kwargs):
        global _calls
        _calls += 1
        if COUNT_FILE:
            with open(COUNT_FILE, "w") as f:
                f.write(str(_calls))
        if _calls == KILL_AT and not KILL_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(self, *args, **kwargs)
        if _calls == KILL_AT and KILL_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)
        if SLOW:
            time.sleep(SLOW)
        if PAUSE_FILE:
            deadline = time.monotonic() + 600
            while os.path.exists(PAUSE_FILE) and time.monotonic() < deadline:
                time.sleep(0.01)
        return result

    setattr(LocalStorage, method_name, hooked)


_hook("put")
_hook("delete")
if FREE is not None:
    LocalStorage.free_space = lambda self: int(FREE)

if __name__ == "__main__":
    sys.exit(main())
