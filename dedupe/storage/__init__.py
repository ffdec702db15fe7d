"""Storage backends and `open_storage(url)`, the one place a URL becomes a backend."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

from dedupe.errors import NoRepository, StorageError, UsageError
from dedupe.storage.base import ObjectInfo, Storage, validate_name

__all__ = ["ObjectInfo", "Storage", "open_storage", "validate_name"]


def open_storage(url: str, *, s3_endpoint: str | None = None, create: bool = False) -> Storage:
    """Return the backend for `url`: a plain path or file://, sftp://, s3://.

    With `create`, a local root folder is created if missing (for `init`).
    """
    if not url:
        raise UsageError("no repository given: use --repo URL or set DEDUPE_REPO")
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        from dedupe.storage.local import LocalStorage

        path = unquote(parsed.path) if scheme == "file" else url
        return LocalStorage(_local_root(os.path.abspath(os.path.expanduser(path)), create))
    # Remote backends are wrapped here, in the one place backends are composed: transient
    # network failures are retried with backoff, nothing else is.
    from dedupe.storage.retry import RetryingStorage

    if scheme == "sftp":
        from dedupe.storage.sftp import SFTPStorage

        return RetryingStorage(SFTPStorage.from_url(url, create=create))
    if scheme == "s3":
        from dedupe.storage.s3 import S3Storage

        endpoint = s3_endpoint or os.environ.get("DEDUPE_S3_ENDPOINT")
        return RetryingStorage(S3Storage.from_url(url, endpoint=endpoint, create=create))
    raise UsageError(f"unsupported repository URL scheme {scheme!r} (use a path, sftp:// or s3://)")


def _local_root(path: str, create: bool) -> str:
    """The repository folder `path`; with `create`, made if missing (for `init`).

    A file where the folder (or one above it) should be is no repository: say so (exit 10),
    naming the file, rather than failing later on "Not a directory".
    """
    existing = path
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if os.path.exists(existing) and not os.path.isdir(existing):
        what = "it is" if existing == path else f"{existing} is"
        if create:
            raise StorageError(
                f"cannot create a repository at {path}: {what} a file, not a folder. Choose "
                "another --repo path"
            )
        raise NoRepository(
            f"there is no dedupe repository at {path}: {what} a file, not a repository "
            "folder. Check --repo (or DEDUPE_REPO)"
        )
    if create:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the repository folder {path}: {exc.strerror or exc}"
            ) from None
    return path
