"""Reading a sequence of blobs in order, with bounded read-ahead by a thread pool.

Blobs that follow each other in one pack are read as one run (one storage request), and runs
are requested up to PREFETCH_BYTES ahead of the consumer, so a remote repository stays busy while
memory stays bounded whatever the number of blobs. Used by copy (a restore has its own planner).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from dedupe.errors import DamageError
from dedupe.repo.index import Location
from dedupe.repo.repository import Repository

# Enough to keep a remote source busy, small enough to bound memory.
PREFETCH_BYTES = 64 << 20
RUN_GAP = 256 * 1024
RUN_BYTES = 8 << 20
RUN_BLOBS = 128


def _runs(repo: Repository, blob_ids: Iterable[bytes]) -> Iterator[list[tuple[bytes, Location]]]:
    """Group blobs that follow each other in one pack, so each group costs one request."""
    run: list[tuple[bytes, Location]] = []
    size = 0
    for blob_id in blob_ids:
        loc = repo.locate(blob_id)
        if run:
            last = run[-1][1]
            gap = loc.offset - (last.offset + last.length)
            if (
                loc.pack_id != last.pack_id
                or not 0 <= gap <= RUN_GAP
                or size >= RUN_BYTES
                or len(run) >= RUN_BLOBS
            ):
                yield run
                run, size = [], 0
        run.append((blob_id, loc))
        size += loc.length
    if run:
        yield run


def read_blobs(
    repo: Repository, blob_ids: Iterable[bytes], pool: ThreadPoolExecutor
) -> Iterator[tuple[bytes, bytes]]:
    """(blob id, verified plaintext) in the order given, read by the pool up to PREFETCH_BYTES
    ahead. A missing or damaged blob raises DamageError when its turn comes."""
    pending: deque[tuple[Future[list[bytes | DamageError]], list[bytes], int]] = deque()
    ahead = 0
    runs = _runs(repo, blob_ids)
    exhausted = False
    try:
        while True:
            while not exhausted and ahead < PREFETCH_BYTES:
                run = next(runs, None)
                if run is None:
                    exhausted = True
                    break
                size = sum(loc.raw_length for _id, loc in run)
                future = pool.submit(repo.read_blob_run, run)
                pending.append((future, [blob_id for blob_id, _loc in run], size))
                ahead += size
            if not pending:
                return
            future, ids, size = pending.popleft()
            ahead -= size
            for blob_id, result in zip(ids, future.result(), strict=True):
                if isinstance(result, DamageError):
                    raise DamageError(f"source repository: {result}")
                yield blob_id, result
    finally:
        for future, _ids, _size in pending:
            future.cancel()
