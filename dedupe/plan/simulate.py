"""Sizing before there is a history: `dedupe plan --simulate FOLDER`.

What it does, and why this way:

1. **The first backup is measured, not made.** Every file of FOLDER is read once, cut with the
   chunker a repository uses (`dedupe.chunker`, 64 KiB average, a random seed as `init` draws
   one), duplicate chunks are counted once, and each distinct chunk is compressed with zstd at
   the repository's default level under the rule a snapshot keeps (compressed only when that
   saves more than 1/64). The chunks are then dropped. No throwaway repository is written: an
   office sizes a drive because it does not have the space yet, and a repository in a
   temporary folder would need the folder's compressed size again on this machine's disk. The
   bytes a snapshot adds around the data (sealing, pack headers, index entries: `BLOB_OVERHEAD`
   a blob; trees, manifests and keys: `FIXED_BYTES`) are counted from the format's sizes.
2. **The nightly change is measured from the files' modification times** (or given with
   `--change-rate`). B(d), the bytes of files modified within the last d days for d = 1..N
   (N = `MEASURE_DAYS`), is fitted by a straight line B(d) = D + s * d: the intercept D is what
   is rewritten every night (a dump, a mailbox: gone from the next night's backup), the slope s
   what the folder gains or changes a day and keeps (scans, letters). A file modified once
   counts whole (a backup stores only its changed chunks: the safe side). Both are stored at
   the compression the recently modified files measured (not the whole folder's: old letters
   compress, new scans do not). With `--change-rate PCT`, PCT % of the folder's bytes change a
   night in scattered pieces (a database, a mailbox), each re-storing the chunks it touches
   (`REWRITE_COST`) and replacing what those chunks held: the newest backup references a
   share (1 - f) ** k of the base k nights on (f = the share of the folder replaced a night),
   and older versions stay only while the policy keeps a backup that holds them.
3. **The forecast is `plan`'s own**: the measurement becomes a one-snapshot `History` (the
   base) and one `GroupEstimate` (the nightly level D + s, of which s / (D + s) survives a
   night; the base stays, or fades as in-place changes replace it), and `projection.forecast`
   replays the policy, forget and gc night by night exactly as for a real repository. Once a
   history exists, `plan` measures these same quantities from it; docs/PLAN.md compares both
   on replayed nights.

Reading files is I/O, so this module is the one part of `dedupe.plan` that is not pure; it never
writes anything.
"""

from __future__ import annotations

import math
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import zstandard
from blake3 import blake3

from dedupe.chunker import DEFAULT_AVG, Chunker, ChunkerParams
from dedupe.crypto.seal import OVERHEAD as SEAL_OVERHEAD
from dedupe.plan.estimate import History, PackUsage
from dedupe.plan.projection import GroupEstimate
from dedupe.retention import SnapshotInfo
from dedupe.units import format_bytes

MEASURE_DAYS = 30
"""How far back the modification times are read (B(d) for d = 1..30)."""
ZSTD_LEVEL = 3
"""The repository's default compression (`init`'s `zstd`)."""
BLOB_OVERHEAD = SEAL_OVERHEAD + 1 + 48 + 56
"""Stored bytes a blob costs besides its compressed data: the seal (nonce, MAC), the mode byte,
its pack header entry and its index entry (about 48 and 56 bytes encoded)."""
FIXED_BYTES = 64 * 1024
"""Config, keys, the manifest and the trees of a small folder: held constant (measured on the
tests' repositories: 20-60 kB)."""
FADE_DAYS = 3650
"""How far the in-place fading is written out (beyond, what is left stays: the safe side)."""
REWRITE_COST = 2.0
"""Stored bytes per changed file byte with `--change-rate`: a change re-stores every chunk it
touches, and a change of about a chunk's size (64 KiB) overlaps two chunks on average; taken as
not compressing (the safe side). Measured on a `size_my_drive --folder --change-rate 1` run
(64 KiB regions rewritten): 1.86 (docs/PLAN.md)."""


class SimulateError(ValueError):
    """A folder that cannot be measured; the message says what to do."""


@dataclass(frozen=True)
class FolderMeasure:
    """What one read of the folder measured."""

    folder: str
    files: int
    raw_bytes: int
    """Bytes of the files."""
    unique_raw_bytes: int
    """After deduplication (each distinct chunk once)."""
    stored_bytes: int
    """What the first backup would store: compressed chunks, overheads, `FIXED_BYTES`."""
    chunks: int
    unreadable: tuple[str, ...]
    changed: tuple[int, ...]
    """changed[d - 1] = B(d): bytes of the files modified within the last d days."""
    changed_stored_bytes: int = 0
    """The compressed chunk bytes of the files modified within the measured days (overheads
    apart: the forecast adds them at the folder's ratio, as for a real repository's nights)."""

    @property
    def stored_ratio(self) -> float:
        """Stored bytes per file byte (deduplication and compression together)."""
        return self.stored_bytes / self.raw_bytes if self.raw_bytes else 1.0

    @property
    def data_bytes(self) -> int:
        """The compressed chunks alone (no overheads)."""
        return self.stored_bytes - FIXED_BYTES - self.chunks * BLOB_OVERHEAD

    @property
    def changed_ratio(self) -> float:
        """Compressed chunk bytes per byte of the recently modified files: how the nightly
        change compresses (a folder of old letters with new scans each night compresses, its
        nights do not); the folder's ratio when nothing was modified."""
        recent = self.changed[-1] if self.changed else 0
        if recent:
            return self.changed_stored_bytes / recent
        return self.data_bytes / self.raw_bytes if self.raw_bytes else 1.0


@dataclass(frozen=True)
class NightlyChange:
    """The nightly change the forecast assumes, in stored bytes."""

    rewritten_bytes: float
    """D: rewritten every night, gone from the next night's backup."""
    kept_bytes: float
    """s: changed or added a night and kept."""
    source: str
    """How it was found, in words."""
    replaced_share: float = 0.0
    """Share of the folder a night's change replaces in place (`--change-rate`): what the
    newest backup references of the base, and of every older night, fades by that a night."""

    @property
    def nightly_bytes(self) -> float:
        return self.rewritten_bytes + self.kept_bytes


def measure_folder(
    folder: Path,
    now: float,
    days: int = MEASURE_DAYS,
) -> FolderMeasure:
    """Read every regular file under `folder` once (symlinks are not followed, as a snapshot
    stores them as links) and measure what a first backup of it would store."""
    if not folder.is_dir():
        raise SimulateError(
            f"cannot simulate backups of {folder}: it is not a folder; give the folder the "
            "nightly backup will save"
        )
    chunker = Chunker(ChunkerParams.for_average(DEFAULT_AVG), secrets.randbits(63))
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    seen: set[bytes] = set()
    files = raw = unique_raw = stored = chunks = changed_stored = 0
    unreadable: list[str] = []
    changed = [0] * days
    for top, dirs, names in os.walk(folder, onerror=lambda e: unreadable.append(str(e.filename))):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(top, name)
            before = stored
            try:
                info = os.lstat(path)
                if not _regular(info.st_mode):
                    continue
                with open(path, "rb", buffering=0) as f:
                    for piece in chunker.chunks(f.readinto, info.st_size):
                        digest = blake3(piece).digest()
                        if digest in seen:
                            continue
                        seen.add(digest)
                        packed = len(compressor.compress(piece))
                        size = len(piece)
                        stored += packed if packed < size - size // 64 else size
                        unique_raw += size
                        chunks += 1
            except OSError as exc:
                unreadable.append(f"{path}: {exc.strerror}")
                continue
            files += 1
            raw += info.st_size
            age = (now - info.st_mtime) / 86400
            for d in range(max(1, math.ceil(age)), days + 1):
                changed[d - 1] += info.st_size
            if age <= days:
                changed_stored += stored - before
    if files == 0:
        raise SimulateError(
            f"{folder} holds no file that could be read, so there is nothing to measure"
            + (f" ({len(unreadable)} could not be read)" if unreadable else "")
        )
    return FolderMeasure(
        folder=str(folder),
        files=files,
        raw_bytes=raw,
        unique_raw_bytes=unique_raw,
        stored_bytes=stored + chunks * BLOB_OVERHEAD + FIXED_BYTES,
        chunks=chunks,
        unreadable=tuple(unreadable),
        changed=tuple(changed),
        changed_stored_bytes=changed_stored,
    )


def _regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def nightly_change(measure: FolderMeasure, change_rate: float | None = None) -> NightlyChange:
    """D and s (module docstring, point 2), in stored bytes. `change_rate` is a fraction."""
    if change_rate is not None:
        kept = measure.raw_bytes * change_rate * REWRITE_COST
        return NightlyChange(
            0.0,
            kept,
            f"{change_rate * 100:g} % of the folder's bytes changed a night, as given; each "
            f"change re-stores the chunks it touches, about {REWRITE_COST:g} times its bytes, "
            "and replaces what they held",
            min(1.0, change_rate * REWRITE_COST),
        )
    days = len(measure.changed)
    xs = list(range(1, days + 1))
    ys = [float(b) for b in measure.changed]
    mean_x, mean_y = sum(xs) / days, sum(ys) / days
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    if slope < 0:  # fewer changes further back cannot be: only the level is read
        slope, intercept = 0.0, mean_y
    if intercept < 0:  # a line through 0: all of the change is kept
        intercept = 0.0
        slope = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
    ratio = measure.changed_ratio
    return NightlyChange(
        intercept * ratio,
        slope * ratio,
        f"measured from the files modified in the last {days} days",
    )


def simulated_history(
    measure: FolderMeasure, change: NightlyChange, when: datetime, host: str = "simulated"
) -> tuple[History, tuple[GroupEstimate, ...]]:
    """The first backup as a one-snapshot history, and the nightly estimate its future nights
    follow (module docstring, point 3). `when` carries the time zone of the nights."""
    info = SnapshotInfo(id="simulated", time=when, host=host, paths=(measure.folder,))
    data = max(0, measure.stored_bytes - FIXED_BYTES)
    overhead = measure.chunks * BLOB_OVERHEAD
    history = History(
        snapshots=(info,),
        added_bytes=(measure.stored_bytes,),
        packs=(PackUsage(data, ((1, data - overhead),)),),
        other_bytes=FIXED_BYTES,
    )
    nightly = change.nightly_bytes
    kept_share = change.kept_bytes / nightly if nightly else 1.0
    fade = tuple((1.0 - change.replaced_share) ** k for k in range(FADE_DAYS + 1))
    estimate = GroupEstimate(
        group=info.group_key,
        newest=when,
        newest_bit=0,
        nightly_bytes=nightly,
        nights_used=len(measure.changed),
        nights_capped=0,
        nightly_trend=0.0,
        survival=(1.0, *(kept_share * f for f in fade[1:])),
        survival_measured=True,
        tail_exponent=0.0,
        standing=fade,
        standing_measured=change.replaced_share > 0,
    )
    return history, (estimate,)


def describe(measure: FolderMeasure, change: NightlyChange) -> list[str]:
    """What was measured, in the words `plan` prints under "how this was estimated"."""
    return [
        f"  simulated: no history, so {measure.folder} was read once ({measure.files} files, "
        f"{format_bytes(measure.raw_bytes)}): a first backup would store "
        f"{format_bytes(measure.stored_bytes)} (deduplicated and compressed as a repository "
        "does; nothing was written)",
        f"  a night adds about {format_bytes(change.nightly_bytes)} ({change.source})"
        + (
            f": {format_bytes(change.rewritten_bytes)} rewritten every night (gone the next "
            f"night) and {format_bytes(change.kept_bytes)} changed and kept; a file modified "
            "counts whole"
            if not change.replaced_share
            else ""
        ),
        "  once nightly backups exist, run plan without --simulate: it measures the same from "
        "the repository's own history",
    ]


def night_of(now: datetime) -> datetime:
    """Tonight's backup time (23:00 local), the simulated first backup's time."""
    return now.replace(hour=23, minute=0, second=0, microsecond=0) + timedelta(
        days=1 if now.hour >= 23 else 0
    )
