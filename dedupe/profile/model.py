"""The profile as frozen values: what `dedupe run`, `status` and `ui` read from `dedupe.toml`.

Strings are kept as written (a repository URL, a source path, a mount point); the file names the
job itself reads (`password-file`) are resolved against the profile's folder by the loader.
Weekdays are numbers, 0 = Monday .. 6 = Sunday, as in `dedupe.retention`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dedupe.retention import Policy

# [alerts] defaults when the profile leaves a key out (the contract's example values).
DEFAULT_LOW_DISK_PERCENT = 10.0
DEFAULT_LOW_DISK_DAYS = 14
DEFAULT_OVERDUE_DAYS = 8


@dataclass(frozen=True)
class RepositoryConfig:
    """[repository]: the local repository and how to get its password (at most one way; with
    neither, the usual `DEDUPE_PASSWORD_*` variables or the prompt apply)."""

    url: str
    password_file: Path | None = None
    password_command: str | None = None  # run by the shell, as DEDUPE_PASSWORD_COMMAND


@dataclass(frozen=True)
class Source:
    """[[source]]: either files and folders (`paths`, `exclude`) or a command whose stdout is
    saved as the stream `/stdin_name` (`command`, never run through a shell)."""

    name: str
    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    stdin_name: str | None = None

    @property
    def is_command(self) -> bool:
        return self.command is not None


@dataclass(frozen=True)
class Drive:
    """[[drive]]: a rotating external drive, written only on its weekdays and only when `mount`
    is a mount point."""

    name: str
    mount: str
    url: str
    weekdays: frozenset[int]


@dataclass(frozen=True)
class Offsite:
    """[[offsite]]: an off-site copy; with no password setting it uses the repository's."""

    name: str
    url: str
    s3_endpoint: str | None = None
    password_file: Path | None = None
    password_command: str | None = None


@dataclass(frozen=True)
class Alerts:
    """[alerts]: where failures and warnings go (Apprise URLs) and when disk or drives warn."""

    urls: tuple[str, ...] = ()
    low_disk_percent: float = DEFAULT_LOW_DISK_PERCENT  # warn below this much free, 0-100
    low_disk_days: int = DEFAULT_LOW_DISK_DAYS  # warn when the forecast fills it sooner
    overdue_days: int = DEFAULT_OVERDUE_DAYS  # a drive not updated for longer is overdue


@dataclass(frozen=True)
class Profile:
    """A whole `dedupe.toml`. `policy` is None when the profile has no [policy] table."""

    path: Path
    repository: RepositoryConfig
    sources: tuple[Source, ...] = ()
    policy: Policy | None = None
    drives: tuple[Drive, ...] = ()
    offsites: tuple[Offsite, ...] = ()
    alerts: Alerts = Alerts()
