"""Where each scheduler's files go, the commands that start and stop the job, and writing and
removing exactly those files.

`placement` answers for one scheduler and level (system or user); `files_for` renders a job into
its files; `write` puts them in place atomically (a reader never sees half a unit); `remove`
deletes only files that carry dedupe's mark and refuses to touch one that does not. Running the
commands (`systemctl`, `launchctl`, `crontab`) is the caller's: this module only names them, so
`--unit-dir` (packagers, tests) and a machine without the tool get the same files.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dedupe.errors import DedupeError
from dedupe.platform import SchedulerKind
from dedupe.schedule.job import LAUNCHD_LABEL, NAME, Job
from dedupe.schedule.render import (
    cron_d_file,
    is_ours,
    launchd_plist,
    systemd_service,
    systemd_timer,
)

Command = tuple[str, ...]


@dataclass(frozen=True)
class Placement:
    """One scheduler at one level. `files` is empty for a user's crontab (`crontab` True),
    which is edited through the crontab tool. `activate` runs after the files are written,
    `deactivate` before they are removed (or replaced), `reload` after removing them."""

    kind: SchedulerKind
    user: bool
    files: tuple[Path, ...] = ()
    activate: tuple[Command, ...] = ()
    deactivate: tuple[Command, ...] = ()
    reload: tuple[Command, ...] = ()
    last_run: str = ""
    log_path: str = ""
    crontab: bool = False
    unit_dir: bool = False  # files go to a folder given by the user: nothing is run
    hints: tuple[str, ...] = field(default=())


def placement(
    kind: SchedulerKind,
    *,
    user: bool,
    home: Path,
    uid: int,
    unit_dir: Path | None = None,
    config_home: Path | None = None,
    root: Path = Path("/"),
) -> Placement:
    """Where `kind` keeps the job: system level unless `user`; `unit_dir` (systemd units into
    that folder, nothing run); `config_home` is `$XDG_CONFIG_HOME` (default `home/.config`);
    `root` prefixes the system folders (tests)."""
    if unit_dir is not None:
        return _systemd(user, Path(unit_dir), from_unit_dir=True)
    if kind == "systemd":
        folder = (config_home or home / ".config") / "systemd/user" if user else None
        return _systemd(user, folder or root / "etc/systemd/system", from_unit_dir=False)
    if kind == "launchd":
        return _launchd(user, home, uid, root)
    if user:
        return Placement(
            "cron",
            True,
            crontab=True,
            last_run="cron mails what a night printed (with -q: only problems) to your "
            "MAILTO; 'dedupe status' shows the last run",
        )
    return Placement(
        "cron",
        False,
        files=(root / "etc/cron.d" / NAME,),
        last_run="cron mails what a night printed (with -q: only problems) to root; "
        "'dedupe status' shows the last run",
    )


def _systemd(user: bool, folder: Path, *, from_unit_dir: bool) -> Placement:
    ctl: Command = ("systemctl", "--user") if user else ("systemctl",)
    journal = "journalctl --user" if user else "journalctl"
    timer = f"{NAME}.timer"
    files = (folder / f"{NAME}.service", folder / timer)
    last_run = f"'{journal} -u {NAME}.service' (and '{' '.join(ctl)} list-timers {timer}')"
    if from_unit_dir:
        return Placement(
            "systemd",
            user,
            files=files,
            last_run=last_run,
            unit_dir=True,
            hints=(
                f"to start it once these files are in a systemd unit folder: "
                f"{' '.join(ctl)} daemon-reload && {' '.join(ctl)} enable --now {timer}",
            ),
        )
    return Placement(
        "systemd",
        user,
        files=files,
        activate=((*ctl, "daemon-reload"), (*ctl, "enable", "--now", timer)),
        deactivate=((*ctl, "disable", "--now", timer),),
        reload=((*ctl, "daemon-reload"),),
        last_run=last_run,
    )


def _launchd(user: bool, home: Path, uid: int, root: Path) -> Placement:
    if user:
        plist = home / "Library/LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        log = home / "Library/Logs" / f"{NAME}.log"
        domain = f"gui/{uid}"
    else:
        plist = root / "Library/LaunchDaemons" / f"{LAUNCHD_LABEL}.plist"
        log = root / "Library/Logs" / f"{NAME}.log"
        domain = "system"
    return Placement(
        "launchd",
        user,
        files=(plist,),
        activate=(("launchctl", "bootstrap", domain, str(plist)),),
        deactivate=(("launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"),),
        last_run=f"the log file {log} (and 'launchctl print {domain}/{LAUNCHD_LABEL}')",
        log_path=str(log),
    )


def files_for(place: Placement, job: Job) -> dict[Path, bytes]:
    """The files `place` needs for `job` (none for a user's crontab)."""
    if place.kind == "systemd":
        service, timer = place.files
        return {service: systemd_service(job).encode(), timer: systemd_timer(job).encode()}
    if place.kind == "launchd":
        return {place.files[0]: launchd_plist(job, place.log_path)}
    if place.crontab:
        return {}
    return {place.files[0]: cron_d_file(job).encode()}


def installed(place: Placement) -> dict[Path, bytes]:
    """The files of `place` that exist now, with their contents."""
    found = {}
    for path in place.files:
        try:
            found[path] = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DedupeError(f"cannot read {path}: {exc.strerror or exc}") from None
    return found


def refuse_foreign(place: Placement) -> None:
    """DedupeError if a file where ours go exists and was not written by dedupe."""
    for path, content in installed(place).items():
        if not is_ours(content):
            raise DedupeError(
                f"{path} exists and was not written by 'dedupe schedule install', so it is left "
                "as it is. Rename or remove it yourself if it is not needed, then run the "
                "command again"
            )


def write(files: dict[Path, bytes]) -> None:
    """Write each file whole (temporary file, fsync, rename), readable by all (mode 644): a
    scheduler never reads half a unit."""
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def remove(place: Placement) -> list[Path]:
    """Delete the files of `place` that dedupe wrote; the removed paths. A file of another
    origin at one of those paths is refused (DedupeError) before anything is deleted."""
    refuse_foreign(place)
    removed = []
    for path in installed(place):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
