"""What a restore did, counted (`RestoreStats`), and the error it ends with when something could
not be restored or did not read back right (`RestoreIncomplete`, exit 14), or when only
something in the target stood in the way of some files (`RestoreBlocked`, exit 1).

A restore that met damage or an obstacle still restores everything else first; the exception
comes at the end so that a caller who never looks at the statistics still cannot miss the damage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dedupe.errors import DamageError, DedupeError


@dataclass
class RestoreStats:
    files: int = 0  # files written (created or overwritten)
    dirs: int = 0
    symlinks: int = 0
    bytes_written: int = 0
    created: int = 0  # files and symlinks where nothing was before
    overwritten: int = 0  # files and symlinks replaced (each atomically, by a rename)
    unchanged: int = 0  # already held the snapshot's content: left as they were
    kept: int = 0  # already there and kept by --overwrite never / if-newer
    verified: int = 0  # read back (or compared) and found to match the snapshot
    warnings: list[str] = field(default_factory=list)
    # (path, why) of files left out because their stored content is damaged
    damaged_files: list[tuple[str, str]] = field(default_factory=list)
    # (path, why) of folders whose listing is damaged: nothing below them was restored
    damaged_folders: list[tuple[str, str]] = field(default_factory=list)
    # (path, why) of files that did not read back as the snapshot holds them (--verify)
    mismatched: list[tuple[str, str]] = field(default_factory=list)
    # (path, why) of files not restored because something in the target is in the way
    blocked: list[tuple[str, str]] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return bool(self.damaged_files or self.damaged_folders or self.mismatched)


class RestoreIncomplete(DamageError):
    """Raised at the end of a restore that met damage or a verification mismatch: everything
    intact was restored, and `stats` lists what was not (its message says so, for the user)."""

    def __init__(self, stats: RestoreStats) -> None:
        super().__init__(damage_summary(stats))
        self.stats = stats


class RestoreBlocked(DedupeError):
    """Raised at the end of a restore that restored everything else but found things in the
    target in the way of some files (a folder where the snapshot has a file): exit 1."""

    def __init__(self, stats: RestoreStats) -> None:
        super().__init__(damage_summary(stats))
        self.stats = stats


def _names(items: list[tuple[str, str]]) -> str:
    names = ", ".join(path for path, _why in items[:10])
    return names + (f" and {len(items) - 10} more" if len(items) > 10 else "")


def damage_summary(stats: RestoreStats) -> str:
    """What a restore that met damage says last: how much came back, what did not, what next.
    (Each file and folder was already named on stderr, with the technical reason.)"""
    lost = len(stats.damaged_files)
    parts = []
    if lost or stats.damaged_folders:
        parts.append(
            f"restored {stats.files} of {stats.files + lost} files"
            + ("" if not stats.damaged_folders else " that could be listed")
        )
    if lost:
        parts.append(
            f"{lost} could not be restored because the backup data is damaged: "
            + _names(stats.damaged_files)
        )
    if stats.damaged_folders:
        parts.append(
            f"{len(stats.damaged_folders)} folder(s) could not be read, so nothing in them was "
            f"restored: {_names(stats.damaged_folders)}"
        )
    advice = []
    if lost or stats.damaged_folders:
        advice.append(
            "Everything else was restored intact. Restore the missing files from another copy "
            "(a rotating drive or the off-site copy), and run 'dedupe check --read-data' to "
            "find all damage in this repository."
        )
    if stats.mismatched:
        parts.append(
            f"{len(stats.mismatched)} file(s) on disk did not match the backup when read back: "
            + _names(stats.mismatched)
        )
        advice.append(
            "Something changed them while the restore ran, or the disk did not keep what was "
            "written: run the restore again, and check the target disk if it happens again."
        )
    if stats.blocked:
        parts.append(
            f"{len(stats.blocked)} file(s) were not restored because a folder of the same name "
            f"is in the target: {_names(stats.blocked)}"
        )
        advice.append(
            "Everything else was restored. Move those folders away (or restore into an empty "
            "folder) and run the restore again."
        )
    return "; ".join(parts) + ". " + " ".join(advice)
