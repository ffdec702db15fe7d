"""What a gc run reports: `GcResult`, and the progress callback's shape.

Shared by the steps that fill the result (`dedupe.gc.execute`, and `dedupe.gc.collect` for a dry
run) and by the mark step that reports progress; the CLI prints it (`dedupe.cli.cmd_gc`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): phases "mark" (trees), "delete" (packs), "repack" (bytes)."""


def no_progress(phase: str, done: int, total: int) -> None:
    """A `Progress` that reports nothing."""


@dataclass
class GcResult:
    """What gc did (or, with dry_run, would do). `freed_bytes` is stored bytes given back."""

    dry_run: bool
    stored_bytes_before: int
    stored_bytes_after: int
    freed_bytes: int
    packs_deleted: int = 0
    packs_rewritten: int = 0
    packs_written: int = 0
    bytes_written: int = 0
    unused_bytes: int = 0
    packs_left_for_space: int = 0
    live_blobs: int = 0
    missing_blobs: int = 0
    index_files_deleted: int = 0
    temporary_files_deleted: int = 0
    packs_kept_young: int = 0
    """Packs no index names, written within GRACE_SECONDS: kept whole (maybe a backup's)."""
    damaged_packs: list[str] = field(default_factory=list)
