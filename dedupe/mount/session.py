"""One mount, from the checks before it to the unmount: `serve` returns once the view is gone.

Why these steps:
- the mount point is checked first (exists, is a folder, is empty, is not mounted), so a wrong
  DIR gets our message instead of libfuse's;
- the FUSE binding (`mfusepy`, over Debian's libfuse3) is imported here, when a mount is asked
  for: every other command works where FUSE is not installed;
- the kernel mount is read-only (`ro`), checks permissions against the snapshot's modes
  (`default_permissions`, as restic does), and may keep file pages cached (`kernel_cache`: a
  snapshot never changes);
- the process stays in the foreground; libfuse's own handlers turn SIGINT, SIGTERM and SIGHUP
  into a clean unmount (the mount point is left empty and unmounted), as does `umount DIR`.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from dedupe.errors import DedupeError, UsageError
from dedupe.mount.fs import SnapshotFS

INSTALL_HINT = (
    "install FUSE (on Debian or Ubuntu: apt-get install fuse3) and the FUSE support of dedupe "
    "(pip install 'dedupe-backup[mount]' in dedupe's environment)"
)


class FuseUnavailable(DedupeError):
    """FUSE cannot be used here: libfuse, /dev/fuse or the binding is missing (exit 1)."""


def check_mount_point(path: str) -> None:
    """UsageError unless `path` is an empty folder that nothing is mounted on."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:  # a FUSE mount whose process died
            raise UsageError(
                f"{path}: an earlier mount there ended without unmounting; run "
                f"'umount {path}' (or 'fusermount3 -u {path}'), then mount again"
            ) from None
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such folder; create an empty folder to mount on")
    if not os.path.isdir(path):
        raise UsageError(f"{path}: not a folder; give an empty folder to mount on")
    if os.path.ismount(path):
        raise UsageError(f"{path}: something is already mounted there; run 'umount {path}' first")
    try:
        if os.listdir(path):
            raise UsageError(f"{path}: the folder is not empty; give an empty folder to mount on")
    except PermissionError:
        raise UsageError(f"{path}: this user cannot read the folder") from None


def _binding() -> Any:
    if not os.path.exists("/dev/fuse"):
        raise FuseUnavailable(f"this machine has no /dev/fuse, so it cannot mount: {INSTALL_HINT}")
    try:
        import mfusepy  # optional, and it loads libfuse3 when imported
    except ImportError:
        raise FuseUnavailable(f"the FUSE support is not installed: {INSTALL_HINT}") from None
    except OSError as exc:  # mfusepy raises this when it finds no libfuse
        raise FuseUnavailable(f"libfuse is not installed: {INSTALL_HINT} ({exc})") from None
    return mfusepy


def serve(fs: SnapshotFS, mount_point: str, fsname: str) -> None:
    """Mount `fs` on `mount_point` and serve it until it is unmounted or the process is signalled.

    `fs.init` runs once the kernel mount stands (that is where it says so). Raises
    FuseUnavailable or a DedupeError when the mount could not be made."""
    check_mount_point(mount_point)
    binding = _binding()
    try:
        binding.FUSE(
            fs,
            mount_point,
            foreground=True,
            ro=True,
            default_permissions=True,
            kernel_cache=True,
            fsname=fsname.replace(",", "_"),
            subtype="dedupe",
            # libfuse 3.14 warns about its own default for this on every mount; 4 is its usual.
            max_idle_threads=4,
            encoding="utf-8",
            errors="surrogateescape",
        )
    except RuntimeError as exc:
        # libfuse's status: non-zero also when a signal ended the loop (after a clean unmount).
        if not fs.mounted:
            raise DedupeError(
                f"could not mount on {mount_point} (libfuse status {exc}); libfuse said why "
                f"above. Check that FUSE works here: {INSTALL_HINT}"
            ) from None
