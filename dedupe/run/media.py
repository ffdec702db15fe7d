"""The media of a profile (the local repository, the rotating drives, the off-site copies) and
whether each is attached, which `run`, `status` and `key passwd --profile` all ask.

A drive counts as attached only when its `mount` is a mount point right now and the repository
in it is the one this profile's drive held before (its repository id, remembered in the state
folder after the first run). The mount-point rule is what keeps a backup meant for an external
drive off the server's own disk: with no drive plugged in, `/media/backup-monday` is an empty
folder of the system disk, and writing there would look like success every night. A drive's
repository must lie inside its mount for the same reason.

Reading a drive's repository id needs no password: it is in the plaintext envelope of the
repository's `config` (see docs/FORMAT.md), which is all this module reads from a drive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from dedupe import platform
from dedupe.errors import DedupeError
from dedupe.profile.model import Drive, Profile
from dedupe.repo import config as config_mod
from dedupe.run.state import MediumRecord

REPOSITORY = "repository"
DRIVE = "drive"
OFFSITE = "offsite"


@dataclass(frozen=True)
class Medium:
    """One place the profile's backups live. `password_file` and `password_command` both None
    means the repository's password. `repo_id` is the hex id found on an attached drive (None
    elsewhere, or when the drive is new and holds no repository yet: then `new` is True)."""

    name: str
    kind: str  # REPOSITORY, DRIVE or OFFSITE
    url: str
    s3_endpoint: str | None = None
    password_file: Path | None = None
    password_command: str | None = None
    attached: bool = True
    why_not: str | None = None  # why it is not attached, in words for the office
    repo_id: str | None = None
    new: bool = False  # an attached drive with no repository yet (the run creates one)
    weekdays: frozenset[int] = frozenset()


def profile_media(
    profile: Profile, env: Mapping[str, str], records: Mapping[str, MediumRecord] | None = None
) -> list[Medium]:
    """Every medium of `profile`, the repository first. Drives are judged now (mount point,
    repository id against `records`, default: read from the state folder named by `env`);
    the repository and off-site copies count as attached (whether they answer is found out by
    opening them)."""
    if records is None:
        from dedupe.run.state import State, state_dir

        records = State(state_dir(env), profile.path).media()
    repo = profile.repository
    media = [
        Medium(
            name=REPOSITORY,
            kind=REPOSITORY,
            url=repo.url,
            password_file=repo.password_file,
            password_command=repo.password_command,
        )
    ]
    media.extend(_drive(drive, records.get(drive.name)) for drive in profile.drives)
    media.extend(
        Medium(
            name=offsite.name,
            kind=OFFSITE,
            url=offsite.url,
            s3_endpoint=offsite.s3_endpoint,
            password_file=offsite.password_file,
            password_command=offsite.password_command,
        )
        for offsite in profile.offsites
    )
    return media


def local_path(url: str) -> str | None:
    """The folder of a local repository URL (a plain path or file://), else None."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        return os.path.abspath(unquote(parsed.path))
    if scheme == "":
        return os.path.abspath(os.path.expanduser(url))
    return None


def _drive(drive: Drive, record: MediumRecord | None) -> Medium:
    def absent(why: str) -> Medium:
        return Medium(
            drive.name, DRIVE, drive.url, attached=False, why_not=why, weekdays=drive.weekdays
        )

    mount = os.path.abspath(os.path.expanduser(drive.mount))
    folder = local_path(drive.url)
    if folder is None:
        return absent(
            f"its url {drive.url} is not a folder on the drive; a [[drive]] url must be a "
            f"path inside its mount ({mount})"
        )
    if not _inside(folder, mount):
        return absent(
            f"its repository {folder} is not inside its mount {mount}; fix url or mount in "
            "the profile"
        )
    try:
        mounted = platform.is_mount_point(mount)
    except OSError as exc:
        return absent(f"{mount} cannot be examined ({exc.strerror}); is the drive plugged in?")
    if not mounted:
        return absent(f"it is not plugged in ({mount} is not a mounted drive)")
    try:
        repo_id = read_repo_id(folder)
    except DedupeError as exc:
        return absent(str(exc))
    if repo_id is None:
        return Medium(drive.name, DRIVE, drive.url, new=True, weekdays=drive.weekdays)
    if record is not None and record.repo_id and record.repo_id != repo_id:
        return absent(
            f"the drive at {mount} holds another repository ({repo_id[:8]}, expected "
            f"{record.repo_id[:8]}): is it the right drive? If this drive replaces the old "
            f"one, remove the line of {drive.name!r} from the state folder's media record"
        )
    return Medium(drive.name, DRIVE, drive.url, repo_id=repo_id, weekdays=drive.weekdays)


def read_repo_id(folder: str) -> str | None:
    """The hex repository id of the repository in `folder`; None when the folder does not exist
    or is empty (a new drive); DedupeError when it holds something else."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise DedupeError(f"{folder} is a file, not a repository folder") from None
    except OSError as exc:
        raise DedupeError(f"{folder} cannot be read: {exc.strerror}") from None
    if not names:
        return None
    try:
        with open(os.path.join(folder, "config"), "rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        raise DedupeError(
            f"{folder} holds files but no dedupe repository; nothing is written there. Empty "
            "the folder (or point the profile's url at another one) to use this drive"
        ) from None
    except OSError as exc:
        raise DedupeError(f"the repository in {folder} cannot be read: {exc.strerror}") from None
    try:
        repo_id, _box = config_mod.read_envelope(data)
    except DedupeError as exc:
        raise DedupeError(f"the repository in {folder} is damaged or not dedupe's: {exc}") from None
    return repo_id.hex()


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder
