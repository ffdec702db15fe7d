"""Restoring a folder from the web page: the target check, the preview the office confirms,
and the restore itself running in the background with its progress.

The target is checked as `dedupe restore --target` checks it (a file where the folder should
be is refused; a folder that does not exist is created), and it must be a full path on the
server, since a browser has no working folder. The preview is `dedupe restore --dry-run`'s
(`dedupe.restore.dryrun.preview`): what would be created, replaced, left alone or refused. The
restore is `dedupe.restore.restorer.Restorer`, so every guarantee of the command holds: nothing
is written outside the target, each file lands under its full original path
(`TARGET/srv/practice/letters/...`), a file is never half-written under its real name, damage
costs only the files it touches and is named at the end.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from dedupe.errors import DedupeError, UsageError
from dedupe.model.snapshot import Snapshot
from dedupe.repo.readlock import shared_lock
from dedupe.repo.repository import Repository
from dedupe.restore.dryrun import DryRunTotals, preview
from dedupe.restore.existing import DEFAULT_MODE, MODES, UNCHANGED
from dedupe.restore.outcome import RestoreStats
from dedupe.restore.restorer import RestoreBlocked, RestoreIncomplete, Restorer
from dedupe.restore.steps import selected_bytes
from dedupe.storage import Storage
from dedupe.ui.security import display
from dedupe.units import format_bytes

MODE_WORDS = {
    "if-changed": "replace a file only if it differs from the backup (recommended)",
    "never": "never replace a file that is already there",
    "if-newer": "replace a file only if the backup's copy is newer",
    "always": "replace every file",
}
MAX_LISTED = 20


def check_target(target: str) -> str:
    """The target folder, checked as `restore` checks it; UsageError with what to do."""
    target = target.strip()
    if not target:
        raise UsageError("Type the folder on the server to restore into, e.g. /srv/restored.")
    if "\0" in target or not os.path.isabs(target):
        raise UsageError(
            f"{target!r} is not a full path: type the whole path of a folder on the server, "
            "starting with /, e.g. /srv/restored"
        )
    if os.path.lexists(target) and not os.path.isdir(target):
        raise UsageError(
            f"{target} is a file, not a folder: give a folder to restore into "
            "(it is created if it does not exist)"
        )
    return os.path.normpath(target)


def check_mode(mode: str | None) -> str:
    if mode is None or mode == "":
        return DEFAULT_MODE
    if mode not in MODES:
        raise UsageError(f"unknown choice {mode!r} for files already in the folder")
    return mode


@dataclass
class Preview:
    totals: DryRunTotals
    refused: list[str]
    unchanged: int
    bytes_to_write: str


def dry_run(repo: Repository, snap: Snapshot, include: bytes, target: str, mode: str) -> Preview:
    """What the restore would do (nothing is written)."""
    totals = DryRunTotals()
    refused: list[str] = []
    includes = [] if include == b"/" else [include]
    for item in preview(repo, snap.tree, target, includes, overwrite=mode):
        totals.add(item)
        if item.action in ("conflict", "fail") and len(refused) < MAX_LISTED:
            refused.append(f"{display(item.path)}: {item.reason}")
    return Preview(
        totals,
        refused,
        totals.skipped_because.get(UNCHANGED, 0),
        format_bytes(totals.bytes_to_write),
    )


@dataclass
class RestoreJob:
    """One restore running in a background thread; the page polls `as_json`."""

    id: str
    snapshot: Snapshot
    include: bytes
    target: str
    mode: str
    total: int = 0
    done: int = 0
    running: bool = True
    ok: bool = False
    message: str = "Starting…"
    warnings: list[str] = field(default_factory=list)
    stats: RestoreStats | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def landing(self) -> str:
        """Where the folder's files land (the target plus their full path)."""
        return os.path.join(self.target, display(self.include).lstrip("/"))

    def as_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "ok": self.ok,
            "done_bytes": self.done,
            "total_bytes": self.total,
            "percent": 100 if not self.running else _percent(self.done, self.total),
            "message": self.message,
            "warnings": self.warnings[:MAX_LISTED],
        }


def start(
    repo: Repository,
    storage_owner: Any,
    snap: Snapshot,
    include: bytes,
    target: str,
    mode: str,
) -> RestoreJob:
    """Start restoring `include` (a folder path, "/" for everything) of `snap` under
    `target`. `storage_owner` is the session: if it has ended by the time the restore is done,
    the restore closes its storage."""
    job = RestoreJob(secrets.token_urlsafe(16), snap, include, target, mode)
    thread = threading.Thread(
        target=_run, args=(job, repo, storage_owner), name="ui-restore", daemon=True
    )
    thread.start()
    return job


def _run(job: RestoreJob, repo: Repository, owner: Any) -> None:
    includes = [] if job.include == b"/" else [job.include]
    try:
        job.message = "Counting what to restore…"
        job.total = selected_bytes(repo, job.snapshot.tree, includes)
        job.message = "Restoring…"

        def progress(n: int) -> None:
            job.done += n

        restorer = Restorer(
            repo,
            job.target,
            workers=2,
            progress=progress,
            warn=job.warnings.append,
            overwrite=job.mode,
        )
        try:
            with shared_lock(repo, job.warnings.append, "the restore"):
                job.stats = restorer.restore(job.snapshot.tree, includes)
            job.ok = True
            job.message = _done_words(job, job.stats)
        except (RestoreIncomplete, RestoreBlocked) as exc:
            job.stats = exc.stats
            job.message = f"{_done_words(job, exc.stats)} But: {exc}"
    except DedupeError as exc:
        job.message = f"The restore stopped: {exc}"
    except OSError as exc:
        where = f" ({os.fsdecode(exc.filename)})" if exc.filename else ""
        job.message = (
            f"The restore stopped: {exc.strerror or exc}{where}. Check that the folder is "
            "writable and its disk has room, then start it again (files already restored are "
            "not written twice)."
        )
    finally:
        job.running = False
        job.finished.set()
        storage: Storage | None = getattr(owner, "storage", None)
        if getattr(owner, "ended", False) and storage is not None:
            storage.close()


def _done_words(job: RestoreJob, stats: RestoreStats) -> str:
    text = (
        f"Restored {stats.files} files and {stats.dirs} folders "
        f"({format_bytes(stats.bytes_written)}) into {job.landing}."
    )
    if stats.unchanged:
        text += f" {stats.unchanged} were already there and matched the backup."
    if stats.kept:
        text += f" {stats.kept} already there were kept as they were."
    return text


def _percent(done: int, total: int) -> int:
    if total <= 0:
        return 0
    return min(99, done * 100 // total)
