"""The real `dedupe` CLI (cheap KDF, like tests/cli_entry.py) with one test-only hook: a journal
append stops right after it has found the journal's newest entries and before it writes its own,
so a test can make two writers race at that exact point on any machine. It lives under tests/:
users cannot reach it.

- JOURNAL_TEST_REACHED=PATH: created when the append has read the journal's newest entries.
- JOURNAL_TEST_PAUSE_FILE=PATH: the append then waits while PATH exists (at most 10 minutes).
"""

import os
import sys
import time

import tests.cli_entry  # noqa: F401  (cheap KDF for new keys)
from dedupe.cli.main import main
from dedupe.repo import journal

_heads = journal.heads


def _paused_heads(*args, **kwargs):
    found = _heads(*args, **kwargs)
    with open(os.environ["JOURNAL_TEST_REACHED"], "w"):
        pass
    deadline = time.monotonic() + 600
    while os.path.exists(os.environ["JOURNAL_TEST_PAUSE_FILE"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


journal.heads = _paused_heads

if __name__ == "__main__":
    sys.exit(main())
