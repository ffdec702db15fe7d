"""`python -m dedupe`: the same CLI as the `dedupe` console script."""

import sys

from dedupe.cli.main import main

sys.exit(main())
