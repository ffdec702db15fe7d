"""dedupe: a content-addressed, deduplicating, encrypted backup archiver."""

import os as _os

# numpy (the index's arrays) loads OpenBLAS, which starts a thread per core at import although
# dedupe does no linear algebra: about 70 ms of every launch (0.25 -> 0.17 s for `import numpy`
# on two cores). Set before anything of dedupe imports numpy; a value the user set is kept.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
