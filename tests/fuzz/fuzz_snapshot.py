"""atheris harness: snapshot decoders (snapshot, snapshot_sealed). See tests/fuzz/harness.py."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.fuzz.harness import main  # noqa: E402

if __name__ == "__main__":
    main(["snapshot", "snapshot_sealed"])
