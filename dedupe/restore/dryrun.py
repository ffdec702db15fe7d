"""`restore --dry-run`: what a restore would do, item by item, with nothing touched on disk.

It reads the same steps as the restore (`dedupe.restore.steps`) and asks the same questions of
the target (`dedupe.restore.existing.TargetView`), so its answer is the restore's. It creates,
writes, renames and chmods nothing, not even the target folder, and opens existing files only
to compare their content (read-only, without updating their access time where allowed). It
reads trees from the repository, never file contents.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from dedupe.model.tree import FILE
from dedupe.repo.repository import Repository
from dedupe.restore.existing import CONFLICT, CREATE, OVERWRITE, SKIP, TargetView
from dedupe.restore.steps import Excluded, plan

EXISTS = "exists"
"""The action of a folder that is already there: the restore goes into it (and gives it the
snapshot's permissions and times at the end)."""
FAIL = "fail"
"""The action of a folder whose listing is damaged: nothing below it can be restored."""


class Planned(NamedTuple):
    """One item of a dry run: `action` is create, overwrite, skip, conflict, fail, or for a
    folder exists; `reason` says why, in words (for a skip: "unchanged", or the mode's)."""

    path: str
    type: str  # file, dir or symlink
    action: str
    reason: str
    size: int


@dataclass
class DryRunTotals:
    """Counts of files and symlinks by action (folders are not counted), and the bytes the
    restore would write."""

    create: int = 0
    overwrite: int = 0
    skip: int = 0
    conflict: int = 0
    fail: int = 0
    bytes_to_write: int = 0
    skipped_because: dict[str, int] = field(default_factory=dict)

    def add(self, item: Planned) -> None:
        if item.type == "dir" and item.action != FAIL:
            return
        setattr(self, item.action, getattr(self, item.action) + 1)
        if item.action in (CREATE, OVERWRITE):
            self.bytes_to_write += item.size
        if item.action == SKIP:
            self.skipped_because[item.reason] = self.skipped_because.get(item.reason, 0) + 1


def preview(
    repo: Repository,
    root: bytes,
    target: str,
    includes: Sequence[bytes] = (),
    *,
    overwrite: str,
    excluded: Excluded | None = None,
) -> Iterator[Planned]:
    """What `Restorer(repo, target, overwrite=..., excluded=...).restore(root, includes)` would
    do, in the order it would do it."""
    with TargetView(repo, target, overwrite) as view:
        for step in plan(repo, root, list(includes), excluded):
            decision = view.see(step.kind, step.node)
            if step.kind == "dir_done":
                continue
            if step.kind == "damaged":
                reason = (
                    f"its folder listing is damaged, nothing in it can be restored ({step.why})"
                )
                yield Planned(step.display(), "dir", FAIL, reason, 0)
                continue
            node = step.node
            assert node is not None
            action = decision.action
            if step.kind == "dir":
                kind, size = "dir", 0
                action = EXISTS if action == SKIP else action
            else:
                kind = "file" if node.type == FILE else "symlink"
                size = node.size if node.type == FILE else 0
            yield Planned(step.display(), kind, action, decision.reason, size)


__all__ = [
    "CONFLICT",
    "CREATE",
    "EXISTS",
    "FAIL",
    "OVERWRITE",
    "SKIP",
    "DryRunTotals",
    "Planned",
    "preview",
]
