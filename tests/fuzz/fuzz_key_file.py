"""atheris harness: key files and key exports (stored and sealed). See harness.py."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.fuzz.harness import main  # noqa: E402

if __name__ == "__main__":
    main(["key_file", "key_file_sealed", "key_export", "key_export_payload"])
