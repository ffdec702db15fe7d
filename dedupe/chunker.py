"""Content-defined chunking: FastCDC (pyfastcdc, compiled, GIL released) with a secret seed.

The seed alters the gear table, so chunk boundaries (and therefore sizes) depend on a per-
repository secret. Chunks are yielded as memoryviews into freshly allocated blocks: a consumer may
keep them (e.g. hand them to a worker thread) without copying; a block is freed when its last
chunk view is dropped. Cutting restarts at every chunk boundary, so reading in blocks gives
exactly the cut points of one continuous pass.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pyfastcdc import FastCDC

BLOCK_SIZE = 8 * 1024 * 1024

# 64 KiB: the speed issue's measurements on database dumps (1-2 % scattered row updates) show
# 64 KiB chunks re-store ~22 % of a dump per night against ~77 % for 1 MiB, at a per-chunk cost
# the pipeline can afford. Users with different data choose with `init --chunk-size`.
DEFAULT_AVG = 64 * 1024

# Streams (stdin, `--stdin-from-command`: database dumps) get their own, smaller chunks in a new
# repository (dedupe.repo.config, docs/FORMAT-chunking.md): a dump's nightly changes are single
# rows scattered over the whole file, each costing about one chunk. On pg_dump of pgbench at
# scale 20 with 2,000 transactions a night (benchmarks/pgbench.py), a night adds 0.62x restic's
# growth at 64 KiB, 0.22x at 16 KiB and 0.13x at 8 KiB; 8 KiB costs twice the index entries and
# ~80 % more restore CPU than 64 KiB (16 KiB: ~35 %), so 16 KiB.
DEFAULT_STREAM_AVG = 16 * 1024


@dataclass(frozen=True)
class ChunkerParams:
    """Minimum, average and maximum chunk size in bytes."""

    min_size: int
    avg_size: int
    max_size: int

    @classmethod
    def for_average(cls, avg: int) -> ChunkerParams:
        return cls(max(64, avg // 4), avg, avg * 4)

    def validate(self) -> ChunkerParams:
        if not (256 <= self.avg_size <= 4 * 1024 * 1024):
            raise ValueError("average chunk size must be between 256 B and 4 MiB")
        if not (64 <= self.min_size <= self.avg_size <= self.max_size <= 16 * 1024 * 1024):
            raise ValueError("chunk sizes must satisfy 64 <= min <= avg <= max <= 16 MiB")
        return self


ReadInto = Callable[[memoryview], int]

# Blocks larger than this come from a small pool of reusable buffers. Four cover the blocks
# being read and cut at any moment; more would only raise the peak memory (measured: each
# pooled buffer stays resident for the whole snapshot).
POOL_MIN = 1 << 20
POOL_BUFFERS = 4


def _fresh(size: int) -> memoryview:
    """A new zeroed buffer straight from the kernel: a large bytearray would be zero-filled by
    the allocator under the GIL (once glibc recycles freed blocks, it memsets them), an
    anonymous map gets zero pages as the read touches them. Unmapped when its last view dies.
    """
    return memoryview(mmap.mmap(-1, size))


class _BlockPool:
    """Reusable read buffers for large blocks.

    A fresh 8 MiB bytearray is zero-filled and page-faulted in each time, which cost more than
    the chunking itself. A pooled buffer is reused only once nothing refers to its bytes any
    more: a bytearray with live memoryviews refuses to be resized, which is the test. A buffer
    still in use is simply skipped, so consumers may keep chunk views as long as they like.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._buffers: list[bytearray] = []
        self._lock = threading.Lock()

    @staticmethod
    def _unused(buf: bytearray) -> bool:
        try:
            buf.append(0)  # raises BufferError while any view of the buffer exists
        except BufferError:
            return False
        del buf[-1]
        return True

    def take(self, size: int) -> memoryview:
        """A view of `size` bytes of a free pooled buffer (or of a fresh one if all are busy).

        The view is made under the lock: from then on the buffer counts as in use.
        """
        if size > self._size:
            return _fresh(size)
        with self._lock:
            for buf in self._buffers:
                if self._unused(buf):
                    return memoryview(buf)[:size]
            if len(self._buffers) < POOL_BUFFERS:
                buf = bytearray(self._size)
                self._unused(buf)  # grow its capacity now, not on the first reuse test
                self._buffers.append(buf)
                return memoryview(buf)[:size]
        return _fresh(size)


class Chunker:
    """Splits byte streams into content-defined chunks."""

    def __init__(self, params: ChunkerParams, seed: int) -> None:
        params.validate()
        self.params = params
        self._pool = _BlockPool(BLOCK_SIZE + params.max_size + 1)
        self._cdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=1,
            seed=seed,
        )

    def cut(self, data: bytes | memoryview) -> list[memoryview]:
        """The chunks of one whole, in-memory piece of data (a small file read at once)."""
        if len(data) <= self.params.min_size:
            return [memoryview(data)]  # FastCDC never cuts below min_size: one chunk, no cutter
        return [c.data for c in self._cdc.cut_buf(data)]

    def chunks(self, readinto: ReadInto, size_hint: int | None = None) -> Iterator[memoryview]:
        """Yield the chunks of the stream read by `readinto` until it returns 0."""
        for block in self.blocks(readinto, size_hint):
            yield from block

    def blocks(
        self, readinto: ReadInto, size_hint: int | None = None
    ) -> Iterator[list[memoryview]]:
        """The chunks of the stream, a block's worth (up to BLOCK_SIZE bytes) at a time.

        `size_hint` (the file size, if known) lets a small file be read into a buffer of its
        own size instead of a full block.
        """
        carry = b""
        remaining_hint = size_hint
        while True:
            want = BLOCK_SIZE if remaining_hint is None else min(BLOCK_SIZE, remaining_hint + 1)
            size = len(carry) + max(want, 1)
            view = self._pool.take(size) if size > POOL_MIN else memoryview(bytearray(size))
            view[: len(carry)] = carry
            filled = len(carry)
            eof = False
            while filled < len(view):
                n = readinto(view[filled:])
                if not n:
                    eof = True
                    break
                filled += n
            if remaining_hint is not None:
                remaining_hint = max(0, remaining_hint - (filled - len(carry)))
            data = view[:filled]
            if eof:
                if filled:
                    yield self.cut(data)
                return
            pieces = [c.data for c in self._cdc.cut_buf(data)]
            # The last piece ends at the block's end, not at a real cut point: cut it again
            # together with the next block.
            carry = bytes(pieces.pop())
            if pieces:
                yield pieces
