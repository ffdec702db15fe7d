"""Run the real `dedupe` CLI with cheap Argon2id parameters for new keys (tests only).

There is no user-facing way to weaken the KDF; tests replace the module setting in-process.
Repositories created this way open with the normal CLI too (parameters live in the key file).
"""

import sys

from dedupe.crypto import kdf
from tests.support import CHEAP_KDF

kdf.params_for_new_keys = CHEAP_KDF

from dedupe.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
