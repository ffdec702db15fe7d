"""The real `dedupe` CLI (cheap KDF, like tests/cli_entry.py) with one test-only hook: a snapshot
stops right before it commits its manifest, so a test can act at that exact point on any machine.
It lives under tests/: users cannot reach it.

- SNAPSHOT_TEST_REACHED=PATH: created when the snapshot reaches its commit.
- SNAPSHOT_TEST_PAUSE_FILE=PATH: the snapshot then waits while PATH exists (at most 10 minutes).
"""

import os
import sys
import time

import tests.cli_entry  # noqa: F401  (cheap KDF for new keys)
from dedupe.cli.main import main
from dedupe.repo import manifests

_commit = manifests.commit


def _paused_commit(*args, **kwargs):
    with open(os.environ["SNAPSHOT_TEST_REACHED"], "w"):
        pass
    deadline = time.monotonic() + 600
    while os.path.exists(os.environ["SNAPSHOT_TEST_PAUSE_FILE"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _commit(*args, **kwargs)


manifests.commit = _paused_commit

if __name__ == "__main__":
    sys.exit(main())
