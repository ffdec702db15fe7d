"""The restore's data path: blobs are read, decrypted, decompressed, verified and written into
their file by the worker pool, while the main thread walks on and plans the next files.

The writer thread of the first version (one `os.write` after another, with the workers waiting
for it) was the bottleneck of a large restore: page-cache copies of a 1 GiB dump took a whole
core. Here each worker writes what it decoded with `os.pwrite` at the blob's offset (computed
from the index's raw lengths, which decoding verifies), so copies, decryption and decompression
all run on every core without the GIL.

What stays bounded, whatever the snapshot holds:
- memory: at most `AHEAD_BYTES` of planned-but-unwritten content, and each task holds at most
  one run (`RUN_BYTES` of stored blobs, and their plaintext) while it works;
- descriptors: at most `MAX_OPEN` files under their temporary names and finished folders
  waiting for their times are open at once.

Files are finished (`Restorer._finish_file`) in the order the walk met them, once every task
that writes into them is done. A task never touches a descriptor after its file is finished or
abandoned: on any error the pipeline cancels what has not started and waits for what has,
before a single descriptor is closed.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from dedupe.errors import DamageError
from dedupe.repo.index import Location
from dedupe.repo.repository import Repository

AHEAD_BYTES = 64 << 20
MAX_OPEN = 256
RUN_GAP = 256 * 1024
RUN_BYTES = 8 << 20
RUN_BLOBS = 256


class PendingFile:
    """A file being written under its temporary name; `damage` collects (blob number, why)
    from the planner and the tasks (list.append is atomic), the lowest number is reported."""

    __slots__ = ("fd", "temp", "parent", "payload", "runs", "damage", "written", "checked")

    def __init__(self, fd: int, temp: str, parent: int, payload: object) -> None:
        self.fd = fd
        self.temp = temp
        self.parent = parent
        self.payload = payload  # the restorer's (step, decision)
        self.runs: list[_Run] = []
        self.damage: list[tuple[int, str]] = []
        self.written = 0
        self.checked = 0  # runs[:checked] are known to be done

    def first_damage(self) -> str | None:
        return min(self.damage)[1] if self.damage else None


class _Run:
    """Blobs close together in one pack: one storage request, one task."""

    __slots__ = ("entries", "size", "future")

    def __init__(self) -> None:
        # (blob id, location, file, offset in the file, blob number in the file)
        self.entries: list[tuple[bytes, Location, PendingFile, int, int]] = []
        self.size = 0
        self.future: Future[None] | None = None


def _write_run(
    repo: Repository, entries: list[tuple[bytes, Location, PendingFile, int, int]]
) -> None:
    """The task: read the run, and write each verified blob where its file needs it."""
    results = repo.read_blob_run([(blob_id, loc) for blob_id, loc, _f, _o, _n in entries])
    for (_blob_id, _loc, file, offset, number), data in zip(entries, results, strict=True):
        if isinstance(data, DamageError):
            file.damage.append((number, str(data)))
            continue
        view = memoryview(data)
        while view:
            n = os.pwrite(file.fd, view, offset)
            view = view[n:]
            offset += n


class WritePipeline:
    """Plans files' blobs into runs, submits them to the pool, and hands back finished files
    in order. `finish` is called for each file whose tasks are all done (in walk order);
    `finish_other` runs a deferred action (a folder's metadata) in the same order."""

    def __init__(
        self,
        repo: Repository,
        pool: ThreadPoolExecutor,
        finish: Callable[[PendingFile], None],
    ) -> None:
        self._repo = repo
        self._pool = pool
        self._finish = finish
        self._run = _Run()
        self._runs: deque[_Run] = deque()  # submitted, not yet known to be done
        self._queue: deque[PendingFile | Callable[[], None]] = deque()
        self._open = 0
        self._ahead = 0

    # --- planning ------------------------------------------------------------------------

    def add_file(self, file: PendingFile, content: tuple[bytes, ...], size: int) -> None:
        """Plan `content` into `file`. Sizes are checked from the index first: a file whose
        blobs cannot add up to `size` is damaged at that blob, and nothing past it is read."""
        lookup = self._repo.index.lookup
        offset = 0
        for number, blob_id in enumerate(content):
            loc = lookup(blob_id)
            if loc is None:
                file.damage.append((number, f"blob {blob_id.hex()[:16]} is missing from the index"))
                break
            if offset + loc.raw_length > size:
                file.damage.append((number, "its content is larger than its recorded size"))
                break
            self._add_blob(blob_id, loc, file, offset, number)
            offset += loc.raw_length
        else:
            if offset != size:
                file.damage.append(
                    (
                        len(content),
                        f"its content size ({offset} bytes) does not match the recorded size "
                        f"({size} bytes)",
                    )
                )
        file.written = offset
        self._queue.append(file)
        self._open += 1
        self._pace()

    def add_action(self, action: Callable[[], None]) -> None:
        """Run `action` after every file added so far is finished (a folder's times)."""
        self._queue.append(action)
        self._open += 1  # it holds its folder's descriptor until it runs
        self._pace()

    def _add_blob(
        self, blob_id: bytes, loc: Location, file: PendingFile, offset: int, number: int
    ) -> None:
        run = self._run
        if run.entries:
            last = run.entries[-1][1]
            gap = loc.offset - (last.offset + last.length)
            if (
                loc.pack_id != last.pack_id
                or not 0 <= gap <= RUN_GAP
                or run.size >= RUN_BYTES
                or len(run.entries) >= RUN_BLOBS
            ):
                self._submit()
                run = self._run
        run.entries.append((blob_id, loc, file, offset, number))
        run.size += loc.raw_length
        if not file.runs or file.runs[-1] is not run:
            file.runs.append(run)
        if self._ahead + run.size >= AHEAD_BYTES:
            self._pace()

    def _submit(self) -> None:
        run = self._run
        if run.entries:
            run.future = self._pool.submit(_write_run, self._repo, run.entries)
            self._runs.append(run)
            self._ahead += run.size
            self._run = _Run()

    # --- completion ----------------------------------------------------------------------

    def _pace(self) -> None:
        """Keep within the memory and descriptor bounds: wait for the oldest work."""
        while self._ahead + self._run.size >= AHEAD_BYTES and (self._runs or self._run.entries):
            if not self._runs:
                self._submit()
            head = self._runs[0]
            assert head.future is not None
            wait([head.future])
            self._retire_runs()
        while self._open >= MAX_OPEN:
            self._submit()
            self._finish_head(block=True)
        self.drain(block=False)

    def _retire_runs(self) -> None:
        while self._runs and self._runs[0].future.done():  # type: ignore[union-attr]
            self._ahead -= self._runs.popleft().size

    def _ready(self, file: PendingFile, block: bool) -> bool:
        runs = file.runs
        while file.checked < len(runs):
            future = runs[file.checked].future
            if future is None:  # still being planned: submit it now
                if not block:
                    return False
                self._submit()
                future = runs[file.checked].future
                assert future is not None
            if not future.done():
                if not block:
                    return False
                wait([future])
            future.result()  # a write error (a full disk) is raised here, in order
            file.checked += 1
        return True

    def _finish_head(self, block: bool) -> bool:
        item = self._queue[0]
        if isinstance(item, PendingFile):
            if not self._ready(item, block):
                return False
            self._queue.popleft()
            self._open -= 1
            self._finish(item)
        else:
            self._queue.popleft()
            self._open -= 1
            item()
        return True

    def drain(self, block: bool) -> None:
        """Finish what is done at the head of the queue (all of it with `block`)."""
        self._retire_runs()
        if block:
            self._submit()
        while self._queue and self._finish_head(block):
            pass
        self._retire_runs()

    def abandon(self) -> list[PendingFile]:
        """After an error: no task runs any more when this returns; the files still open are
        returned for the caller to close and remove."""
        pending = [run.future for run in self._runs if run.future is not None]
        for future in pending:
            future.cancel()
        wait(pending)
        self._runs.clear()
        self._run = _Run()
        files = [item for item in self._queue if isinstance(item, PendingFile)]
        self._queue.clear()
        self._open = 0
        return files
