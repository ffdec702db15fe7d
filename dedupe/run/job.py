"""`dedupe run`: one night of a profile, every step tried, one record.

The order is the office's: first the sources (a folder, a database dump), then retention and gc
on the repository, then the copies (every attached drive, every off-site copy, each followed by
the same retention there, holds kept), then tonight's slice of `check --read-data-subset`. A
step that fails does not stop the others; a copy waits for nothing but its medium. A drive that
is not attached is never written, never initialised: an unmounted mount point is a folder on the
server's own disk (see `media`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from dedupe import platform
from dedupe.profile.model import Profile, Source
from dedupe.run import media as media_mod
from dedupe.run.children import Children, ChildResult, Password
from dedupe.run.media import DRIVE, OFFSITE, Medium
from dedupe.run.state import MediumRecord, RunRecord, State
from dedupe.run.status import newest_live
from dedupe.run.verdict import (
    WEEKDAY_NAMES,
    StepResult,
    check_slice,
    days_between,
    is_overdue,
    run_exit_code,
    weekday_list,
)
from dedupe.units import format_bytes


@dataclass
class Night:
    """What a run found and did, filled in step by step."""

    when: datetime
    steps: list[StepResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    newest_snapshot: str | None = None  # ISO time of the repository's newest snapshot

    def record(self, profile: Profile) -> RunRecord:
        code = run_exit_code(self.steps, self.warnings)
        return RunRecord(
            time=self.when.isoformat(),
            ok=code in (0, 3),
            exit=code,
            steps=[step.as_json() for step in self.steps],
            warnings=list(self.warnings),
            profile=str(profile.path),
        )


class Job:
    """One night. `repo_password` is how the repository's password reaches the steps (drives
    use it too); `time` is passed to the snapshots when the run was given `--time`."""

    def __init__(
        self,
        profile: Profile,
        state: State,
        children: Children,
        repo_password: Password,
        when: datetime,
        *,
        given_time: bool = False,
        echo: Callable[[str], None] = lambda _text: None,
    ) -> None:
        self.profile = profile
        self.state = state
        self.children = children
        self.repo_password = repo_password
        self.night = Night(when)
        self.given_time = given_time
        self.echo = echo
        self.records = state.media()

    # --- the night ----------------------------------------------------------------------

    def run(self) -> Night:
        self.state.start_log(f"=== dedupe run {self.night.when.isoformat()} {self.profile.path}")
        media = media_mod.profile_media(self.profile, {}, self.records)
        repository = media[0]
        for source in self.profile.sources:
            self._source(source)
        removed = self._retention(repository)
        low = self._low_disk(repository)
        if removed or low:
            self._gc(repository, "forget removed backups" if removed else "the disk is low")
        if not low:
            self._forecast(repository)
        self._newest(repository)
        for medium in media[1:]:
            if medium.kind == DRIVE:
                self._drive(medium, repository)
            else:
                self._offsite(medium, repository)
        self._check(repository)
        self.state.save_media(self.records)
        return self.night

    def preview(self) -> list[str]:
        """What `run --dry-run` says the night would do; nothing is run or written."""
        media = media_mod.profile_media(self.profile, {}, self.records)
        today = self.night.when.weekday()
        lines = [f"back up {source.name}" for source in self.profile.sources]
        if self.profile.policy is not None:
            lines.append("remove backups the [policy] does not keep, then gc if any were removed")
        for medium in media[1:]:
            if medium.kind == DRIVE:
                if not medium.attached:
                    lines.append(f"skip drive {medium.name}: {medium.why_not}")
                    continue
                day = "its night" if today in medium.weekdays else "NOT its night: a warning"
                new = ", preparing it first (new drive)" if medium.new else ""
                lines.append(f"copy to drive {medium.name} ({day}){new}, then the same policy")
            else:
                lines.append(f"copy off-site to {medium.name}, then the same policy")
        lines.append(
            f"check the repository, reading data part {check_slice(self.night.when.date())}"
        )
        return lines

    # --- steps --------------------------------------------------------------------------

    def _source(self, source: Source) -> None:
        args = ["snapshot", "--json", "--repo", self.profile.repository.url, "--tag", source.name]
        if self.given_time:
            args += ["--time", self.night.when.isoformat()]
        if source.is_command:
            assert source.command is not None and source.stdin_name is not None
            args += [
                "--stdin-name",
                source.stdin_name,
                "--stdin-from-command",
                "--",
                *source.command,
            ]
        else:
            for pattern in source.exclude:
                args += ["--exclude", pattern]
            args += ["--", *source.paths]
        result = self._child("snapshot", source.name, args, {"DEDUPE_": self.repo_password})
        data = result.json() if result.code in (0, 3) else None
        if isinstance(data, dict) and "id" in data:
            added = format_bytes(int(data.get("bytes_added", 0)))
            message = (
                f"saved backup {str(data['id'])[:8]}, {data.get('files', 0)} files, added {added}"
            )
            if result.code == 3:
                message += "; " + _last_lines(result.stderr, 3, "warning")
            self._add("snapshot", source.name, result, message)
        else:
            self._add("snapshot", source.name, result, "")

    def _retention(self, medium: Medium) -> int:
        """Forget on `medium` by the profile's policy; the number of backups removed."""
        if self.profile.policy is None:
            return 0
        args = ["forget", "--json", "--repo", medium.url, "--profile", str(self.profile.path)]
        args += self._endpoint(medium)
        result = self._child("forget", medium.name, args, {"DEDUPE_": self._password(medium)})
        data = result.json() if result.code == 0 else None
        removed = len(data.get("remove", [])) if isinstance(data, dict) else 0
        kept = len(data.get("keep", [])) if isinstance(data, dict) else 0
        self._add("forget", medium.name, result, f"kept {kept} backups, removed {removed}")
        return removed

    def _gc(self, medium: Medium, why: str) -> None:
        args = ["gc", "--json", "--repo", medium.url, *self._endpoint(medium)]
        result = self._child("gc", medium.name, args, {"DEDUPE_": self._password(medium)})
        data = result.json() if result.code == 0 else None
        freed = format_bytes(int(data.get("freed_bytes", 0))) if isinstance(data, dict) else "?"
        self._add("gc", medium.name, result, f"freed {freed} ({why})")

    def _low_disk(self, medium: Medium) -> bool:
        folder = media_mod.local_path(medium.url)
        if folder is None:
            return False
        try:
            usage = shutil.disk_usage(_existing(folder))
        except OSError:
            return False
        percent = 100.0 * usage.free / usage.total if usage.total else 100.0
        self._remember(medium, free_bytes=usage.free)
        limit = self.profile.alerts.low_disk_percent
        if percent < limit:
            self.night.warnings.append(
                f"{medium.name}: the backup disk has only {percent:.1f} % free "
                f"({format_bytes(usage.free)} of {format_bytes(usage.total)}, "
                f"warning below {limit:g} %); "
                "old backups were cleaned up where the policy allows. Plan a larger disk "
                "('dedupe plan' says how large)"
            )
            return True
        return False

    def _forecast(self, medium: Medium) -> None:
        """Warn when `plan` says the repository's disk fills within `low-disk-days` nights: a
        warning weeks ahead, not on the night that no longer fits. Only for a local disk and a
        profile with a policy (the forecast follows it); a forecast that cannot be made (too
        little history) is logged, never a failure of the night."""
        days = self.profile.alerts.low_disk_days
        folder = media_mod.local_path(medium.url)
        if days <= 0 or folder is None or self.profile.policy is None:
            return
        try:
            free = platform.free_bytes(_existing(folder))
        except OSError:
            return
        args = ["plan", "--json", "--repo", medium.url, "--profile", str(self.profile.path)]
        args += ["--days", str(days)]
        result = self._child("forecast", medium.name, args, {"DEDUPE_": self.repo_password})
        data = result.json() if result.code == 0 else None
        if not isinstance(data, dict) or not isinstance(data.get("series"), list):
            return
        series = [p for p in data["series"] if isinstance(p, dict) and "bytes" in p]
        if not series:
            return
        today = int(series[0]["bytes"])
        for night, point in enumerate(series):
            if int(point["bytes"]) - today > free:
                self.night.warnings.append(
                    f"{medium.name}: the backup disk fills in about {night} nights (around "
                    f"{point.get('date')}) at the rate the backups grow, with "
                    f"{format_bytes(free)} free now. Plan a larger disk before then ('dedupe plan "
                    f"--profile {self.profile.path} --drive-size SIZE' says which size lasts)"
                )
                return

    def _newest(self, medium: Medium) -> None:
        """The time of the repository's newest backup (what a copy brings to a drive)."""
        newest = newest_live(medium, self.children, self.repo_password)
        if isinstance(newest, str):  # None: no backup yet; a tuple: it could not be read
            self.night.newest_snapshot = newest
            self._remember(medium, last_snapshot=newest)

    def _drive(self, drive: Medium, repository: Medium) -> None:
        today = self.night.when.weekday()
        expected = today in drive.weekdays
        record = self.records.get(drive.name)
        if not drive.attached:
            unplugged = (drive.why_not or "").startswith("it is not plugged in")
            if expected or not unplugged:
                self.night.warnings.append(
                    f"drive {drive.name}: {drive.why_not}. Tonight is its night "
                    f"({weekday_list(drive.weekdays)}): plug it in; it catches up at the next run"
                    if expected and unplugged
                    else f"drive {drive.name}: {drive.why_not}"
                )
            self._overdue(drive, record)
            return
        if not expected:
            self.night.warnings.append(
                f"drive {drive.name} is plugged in on a {WEEKDAY_NAMES[today]}, but it is the "
                f"drive for {weekday_list(drive.weekdays)}; it got tonight's copy anyway. Check "
                "the drive rotation"
            )
        if drive.new:
            if not self._init_drive(drive, repository):
                return
        self._copy(drive, repository)

    def _init_drive(self, drive: Medium, repository: Medium) -> bool:
        args = ["init", "--json", "--repo", drive.url, "--same-key-as", repository.url]
        passwords = {"DEDUPE_": self.repo_password, "DEDUPE_FROM_": self.repo_password}
        result = self._child("init", drive.name, args, passwords)
        data = result.json() if result.code == 0 else None
        if isinstance(data, dict) and "id" in data:
            self._remember(drive, repo_id=str(data["id"]))
            self._add("init", drive.name, result, f"new drive prepared ({str(data['id'])[:8]})")
            return True
        self._add("init", drive.name, result, "")
        return False

    def _offsite(self, offsite: Medium, repository: Medium) -> None:
        self._copy(offsite, repository)

    def _copy(self, medium: Medium, repository: Medium) -> None:
        args = ["copy", "--json", "--repo", repository.url, "--to", medium.url]
        args += self._endpoint(medium)
        passwords = {"DEDUPE_": self.repo_password, "DEDUPE_TO_": self._password(medium)}
        result = self._child("copy", medium.name, args, passwords)
        if result.code == 13 and self.profile.policy is not None:
            # Full: what fit was copied (oldest first). The policy may free room there (the
            # newer backups just copied let older ones go), then the rest is tried once more.
            self.night.warnings.append(
                f"{medium.kind} {medium.name} was full; old backups its policy no longer keeps "
                "were removed there and the copy was tried again. "
                + _last_lines(result.stderr, 1, "")
            )
            if self._retention(medium):
                self._gc(medium, "to make room for the copy")
            result = self._child("copy", medium.name, args, passwords)
        data = result.json() if result.code == 0 else None
        if not isinstance(data, dict):
            self._add("copy", medium.name, result, "")
            if medium.kind == DRIVE:
                self._overdue(medium, self.records.get(medium.name))
            return
        copied, held = len(data.get("copied", [])), len(data.get("held", []))
        message = f"copied {copied} backups, added {format_bytes(int(data.get('bytes_added', 0)))}"
        if held:
            message += f", {held} holds carried"
        self._add("copy", medium.name, result, message)
        updates: dict[str, object] = {"last_copy": self.night.when.isoformat()}
        if self.night.newest_snapshot is not None:
            updates["last_snapshot"] = self.night.newest_snapshot
        if medium.repo_id is not None:
            updates["repo_id"] = medium.repo_id
        folder = media_mod.local_path(medium.url)
        if folder is not None:
            try:
                updates["free_bytes"] = platform.free_bytes(folder)
            except OSError:
                pass
        self._remember(medium, **updates)
        if self._retention(medium):
            self._gc(medium, "forget removed backups")

    def _overdue(self, drive: Medium, record: MediumRecord | None) -> None:
        last = None
        if record is not None and record.last_copy:
            try:
                last = datetime.fromisoformat(record.last_copy)
            except ValueError:
                last = None
        limit = self.profile.alerts.overdue_days
        if last is not None and is_overdue(last, self.night.when, limit):
            days = int(days_between(last, self.night.when))
            self.night.warnings.append(
                f"drive {drive.name} is overdue: last updated {days} days ago "
                f"({last.date().isoformat()}), more than {limit}. Plug it in on its night so "
                "it gets the newest backups"
            )

    def _check(self, repository: Medium) -> None:
        part = check_slice(self.night.when.date())
        args = ["check", "--json", "--repo", repository.url, "--read-data-subset", part]
        result = self._child("check", repository.name, args, {"DEDUPE_": self.repo_password})
        self._add("check", repository.name, result, f"checked, read data part {part}")

    # --- helpers ------------------------------------------------------------------------

    def _password(self, medium: Medium) -> Password:
        if medium.password_file is not None:
            return Password(file=medium.password_file)
        if medium.password_command is not None:
            return Password(command=medium.password_command)
        return self.repo_password

    def _endpoint(self, medium: Medium) -> list[str]:
        return ["--s3-endpoint", medium.s3_endpoint] if medium.s3_endpoint else []

    def _child(
        self, step: str, target: str, args: list[str], passwords: Mapping[str, Password]
    ) -> ChildResult:
        self.echo(f"{step} {target} ...")
        result = self.children.run(args, passwords)
        log = f"--- {step} {target}: exit {result.code}\n{result.stderr}"
        self.state.append_log(log)
        return result

    def _add(self, step: str, target: str, result: ChildResult, message: str) -> None:
        ok = result.code in (0, 3)
        if not ok:
            message = _last_lines(result.stderr, 4, "") or f"failed with exit code {result.code}"
        elif result.code == 3 and not message:
            message = _last_lines(result.stderr, 3, "warning")
        self.night.steps.append(
            StepResult(step, target, ok, message, exit=result.code, warned=result.code == 3)
        )

    def _remember(self, medium: Medium, **values: object) -> None:
        record = self.records.get(medium.name) or MediumRecord(url=medium.url)
        self.records[medium.name] = replace(record, url=medium.url, **values)  # type: ignore[arg-type]


def _last_lines(text: str, count: int, prefix: str) -> str:
    """The last `count` lines a child printed (that start with `prefix`), "dedupe: " removed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if prefix:
        lines = [line for line in lines if line.startswith(prefix)]
    lines = [line.removeprefix("dedupe: ") for line in lines[-count:]]
    return " / ".join(lines)


def _existing(folder: str) -> str:
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


__all__ = ["Job", "Night", "OFFSITE"]
