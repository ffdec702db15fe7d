"""The `--host/--tag/--path` filters and `SNAP` resolution shared by the commands that read
snapshots (snapshots, find, ls, cat, diff, restore, mount). The rules live in the library
(`dedupe.repo.selection`); this module only adds the options and tells the user, on stderr,
when `latest` chose an older snapshot because the newest does not hold the path.

A command uses it in two lines:

    selection.add_filter_arguments(parser)                          # in register()
    chosen = selection.resolve(ctx, repo, ctx.args.snapshot, paths) # in the handler
    snap = chosen.snapshot; full_paths = [full for full, _node in chosen.found]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from dedupe.cli.context import Context
from dedupe.model.snapshot import Snapshot
from dedupe.repo import selection
from dedupe.repo.repository import Repository
from dedupe.repo.selection import Selection, SnapshotFilter

__all__ = ["Selection", "SnapshotFilter", "add_filter_arguments", "resolve", "snapshot_filter"]


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--host H`, `--tag T` and `--path P` (each repeatable) to a command's parser.

    Their values land in `args.filter_host`, `args.filter_tag`, `args.filter_path` (lists), so
    they never collide with a command's own `path` or `host` arguments."""
    group = parser.add_argument_group(
        "choosing snapshots", "which snapshots are considered, and so which one latest is"
    )
    group.add_argument(
        "--host",
        dest="filter_host",
        action="append",
        default=[],
        metavar="H",
        help="only snapshots taken on host H (repeatable: any of them)",
    )
    group.add_argument(
        "--tag",
        dest="filter_tag",
        action="append",
        default=[],
        metavar="T",
        help="only snapshots with tag T; T1,T2 means both (repeatable: any of them)",
    )
    group.add_argument(
        "--path",
        dest="filter_path",
        action="append",
        default=[],
        metavar="P",
        help="only snapshots that backed up P, a folder or a stream's name (repeatable: all)",
    )


def snapshot_filter(args: argparse.Namespace) -> SnapshotFilter:
    """The filter the options gave (UsageError, exit 2, for an unusable value). A command
    without the options gets the empty filter, which admits every snapshot."""
    return SnapshotFilter.parse(
        getattr(args, "filter_host", ()) or (),
        getattr(args, "filter_tag", ()) or (),
        getattr(args, "filter_path", ()) or (),
    )


def resolve(
    ctx: Context,
    repo: Repository,
    spec: str,
    paths: Sequence[str | bytes] = (),
    snapshots: Sequence[Snapshot] | None = None,
) -> Selection:
    """The snapshot `spec` names for a command that also names `paths` (none: the whole
    snapshot), under the command's `--host/--tag/--path` filters.

    `spec` is a full id, a unique prefix of 4+ hex digits, or `latest`: the newest snapshot
    (admitted by the filters) that holds every path in `paths`. Returns a `Selection`:
    `.snapshot`, `.how` (why it was chosen), `.describe()` for messages, and `.found`, one
    (absolute path as bytes, node or None for the root) per entry of `paths`, in order, so a
    caller needs no second lookup. Raises UsageError (exit 2) when a path is in no fitting
    snapshot, with a message naming the snapshot chosen and how, and DamageError (exit 14) when
    a tree on the way cannot be read. When `latest` passed over the newest snapshot because it
    does not hold the paths, a note on stderr says which snapshot was used instead."""
    chosen = selection.select(repo, spec, paths, snapshot_filter(ctx.args), snapshots)
    if chosen.newest is not None:
        ctx.info(
            f"latest: using {chosen.describe()} (the newest, "
            f"{selection.label(chosen.newest)}, does not hold it)"
        )
    return chosen
