"""Small SFTP helpers for the SFTP backend: mkdir -p, what a path is, free space, quiet removal.

Each works on one `dedupe.storage.sftpwire.SFTPSession`. Free space comes from OpenSSH's
`statvfs@openssh.com` extension, used only when the server announces it (None otherwise: the
caller cannot tell, which `run` and `plan` report as "unknown").
"""

from __future__ import annotations

import errno
import posixpath
import stat as stat_mod

from dedupe.storage.sftpwire import SFTPError, SFTPSession


def makedirs(sftp: SFTPSession, path: str) -> None:
    """mkdir -p on the server."""
    try:
        sftp.mkdir(path)
    except SFTPError as exc:
        if exc.errno == errno.ENOENT:
            parent = posixpath.dirname(path)
            if parent and parent != path:
                makedirs(sftp, parent)
            try:
                sftp.mkdir(path)
            except SFTPError:
                if not is_dir(sftp, path):
                    raise
        elif not is_dir(sftp, path):
            raise


def is_dir(sftp: SFTPSession, path: str) -> bool:
    try:
        return stat_mod.S_ISDIR(sftp.stat(path).st_mode or 0)
    except SFTPError:
        return False


def is_file(sftp: SFTPSession, path: str) -> bool:
    try:
        return stat_mod.S_ISREG(sftp.stat(path).st_mode or 0)
    except SFTPError:
        return False


def kind(sftp: SFTPSession, path: str) -> str:
    """'folder', 'file', 'missing' or 'other', following symlinks; raises on other errors."""
    try:
        mode = sftp.stat(path).st_mode or 0
    except SFTPError as exc:
        if exc.errno == errno.ENOENT:
            return "missing"
        raise
    if stat_mod.S_ISDIR(mode):
        return "folder"
    return "file" if stat_mod.S_ISREG(mode) else "other"


def statvfs_free(sftp: SFTPSession, path: str) -> int | None:
    """Bytes available to us on the server's file system, or None if the server cannot tell."""
    if "statvfs@openssh.com" not in sftp.extensions:
        return None
    try:
        return sftp.statvfs_free(path)
    except SFTPError:
        return None  # the path is gone, or the server would not say


def too_full(sftp: SFTPSession, folder: str, needed: int) -> bool:
    """True if the server says it has less room than `needed` bytes (False if it cannot say)."""
    try:
        free = statvfs_free(sftp, folder)
    except Exception:  # noqa: BLE001 - only a diagnosis; the caller has an error to raise anyway
        return False
    return free is not None and free < max(needed, 1)


def remove_quietly(sftp: SFTPSession, path: str) -> None:
    try:
        sftp.remove(path)
    except Exception:  # noqa: BLE001 - best effort: a leftover temporary is never listed
        pass


def close_quietly(sftp: SFTPSession, handle: bytes) -> None:
    """Close a handle after a failed request (the session is still fine after an error status;
    the handle may be closed already)."""
    try:
        sftp.close(handle)
    except SFTPError:
        pass
