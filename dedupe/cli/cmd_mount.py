"""`dedupe mount DIR`: the snapshots as a read-only folder tree, until unmounted (the work is
dedupe.mount's; this opens the repository, says where to look and how to finish)."""

from __future__ import annotations

import argparse
import os
import sys

from dedupe.cli.context import Context, Subparsers, printable
from dedupe.mount import SnapshotFS, check_mount_point, serve
from dedupe.repo import manifests
from dedupe.repo.readlock import shared_lock

EPILOG = """\
The folder shows:
  DIR/snapshots/<time>_<id>/...   every snapshot's files
  DIR/latest                      the newest snapshot
  DIR/tags/<tag>/, DIR/sources/<source>/   the snapshots of one tag or source (each with latest)
Copy files out with any file manager or cp. The command runs until Ctrl-C or 'umount DIR'.

example:
  mkdir /tmp/backups && dedupe mount /tmp/backups
  (in another window: ls /tmp/backups/latest/srv/practice)
"""


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "mount",
        parents=[common],
        help="show the snapshots as a read-only folder (FUSE)",
        description="Show every snapshot as a read-only folder, to browse the backups and "
        "copy files out with the file manager. Needs FUSE (Linux: the fuse3 package; macOS: "
        "macFUSE).",
        epilog=EPILOG,
    )
    p.add_argument("mount_point", metavar="DIR", help="an empty folder to show the snapshots in")
    p.set_defaults(handler=cmd_mount)


def cmd_mount(ctx: Context) -> int:
    mount_point = os.path.abspath(ctx.args.mount_point)
    check_mount_point(mount_point)  # before the password is asked for
    repo = ctx.repo()
    damaged: list[str] = []
    snaps = manifests.load_all(repo, damaged)
    for text in damaged:
        ctx.warn(f"{text}; it is not shown")
    _ = repo.index  # loaded now, not by the first reader (and not by several at once)

    def mounted() -> None:
        ctx.done(
            f"mounted at {ctx.args.mount_point}; press Ctrl-C or run "
            f"'umount {ctx.args.mount_point}' to finish"
        )
        sys.stdout.flush()

    def report(message: str) -> None:
        # Not ctx.warn: a mount runs for hours and need not remember what it said.
        print(f"warning: {printable(message)}", file=sys.stderr, flush=True)

    fs = SnapshotFS(repo, snaps, report, on_mounted=mounted)
    with shared_lock(repo, ctx.warn, "the mount"):  # a gc meanwhile would delete packs it reads
        serve(fs, mount_point, fsname=f"dedupe:{repo.settings.repo_id.hex()[:8]}")
    ctx.out(f"unmounted {ctx.args.mount_point}")
    return 0
