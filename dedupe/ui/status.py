"""The status page's content: every destination red, amber or green, and last night's run.

With a profile the rows are `dedupe status`'s own (`dedupe.run.status.destinations`: drives
judged by `dedupe.run.media`, live copies asked through child `dedupe snapshots` processes,
unplugged drives from the state folder's record), and the run is the state folder's last run
record, step by step. Without a profile there is one destination, the repository being
served, described from the unlocked repository itself.

The colours: red when a destination is overdue or cannot be read, or the last run failed;
amber when a rotating drive is unplugged, the last run ended with warnings, or no run is
recorded yet; green otherwise. Each row says why in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dedupe import platform
from dedupe.profile.model import DEFAULT_OVERDUE_DAYS, Profile
from dedupe.repo import manifests
from dedupe.repo.repository import Repository
from dedupe.run.children import Children, Password
from dedupe.run.media import DRIVE, local_path, profile_media
from dedupe.run.state import RunRecord, State
from dedupe.run.status import Destination, destinations
from dedupe.run.verdict import days_between
from dedupe.units import format_bytes

GREEN, AMBER, RED = "green", "amber", "red"
_WORDS = {
    GREEN: "Everything is backed up",
    AMBER: "Mostly fine: something needs a look",
    RED: "Action needed",
}
_KINDS = {"repository": "main backup", "drive": "rotating drive", "offsite": "off-site copy"}


@dataclass(frozen=True)
class Row:
    name: str
    kind: str
    light: str
    attached: str
    newest: str
    age: str
    free: str
    state: str
    note: str


@dataclass
class StatusView:
    light: str
    headline: str
    rows: list[Row]
    last_run: RunRecord | None
    has_profile: bool
    problems: list[str] = field(default_factory=list)

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.last_run.steps) if self.last_run is not None else []


def profile_status(
    profile: Profile,
    state: State,
    children: Children,
    repository_password: Password,
    now: datetime,
) -> StatusView:
    """The profile's destinations (as `dedupe status`) and its last run."""
    passwords: dict[str, Password] = {}
    for medium in profile_media(profile, {}, state.media()):
        if medium.password_file is not None:
            passwords[medium.name] = Password(file=medium.password_file)
        elif medium.password_command is not None:
            passwords[medium.name] = Password(command=medium.password_command)
        else:
            passwords[medium.name] = repository_password
    found = destinations(profile, state, children, passwords, now)
    rows = [_row(d) for d in found]
    last = state.last_run()
    lights = [row.light for row in rows]
    problems = []
    if last is None:
        lights.append(AMBER)
        problems.append("No nightly run is recorded yet for this profile.")
    elif last.exit not in (0, 3):
        lights.append(RED)
        problems.append(f"The last nightly run failed (exit code {last.exit}): see its steps.")
    elif last.exit == 3:
        lights.append(AMBER)
        problems.append("The last nightly run finished with warnings: see below.")
    return _view(lights, rows, last, True, problems)


def repository_status(repo: Repository, url: str, now: datetime) -> StatusView:
    """The one repository served without a profile."""
    damaged: list[str] = []
    snaps = manifests.load_all(repo, damaged)
    newest = snaps[-1].time.isoformat() if snaps else None
    age = days_between(snaps[-1].time, now) if snaps else None
    overdue = age is not None and age > DEFAULT_OVERDUE_DAYS
    folder = local_path(url)
    free = None
    if folder is not None:
        try:
            free = platform.free_bytes(folder)
        except OSError:
            free = None
    note = f"{len(snaps)} backups"
    if damaged:
        note += f"; {len(damaged)} could not be read (run 'dedupe check')"
    row = Destination(
        name="repository",
        kind="repository",
        url=url,
        attached=True,
        last_snapshot=newest,
        age_days=None if age is None else round(age, 1),
        overdue=overdue,
        free_bytes=free,
        note=note,
    )
    rows = [_row(row)]
    lights = [rows[0].light] + ([RED] if damaged else [])
    problems = (
        [f"{len(damaged)} backup(s) could not be read: run 'dedupe check'."] if damaged else []
    )
    return _view(lights, rows, None, False, problems)


def _view(
    lights: list[str], rows: list[Row], last: RunRecord | None, profile: bool, problems: list[str]
) -> StatusView:
    light = RED if RED in lights else AMBER if AMBER in lights else GREEN
    return StatusView(light, _WORDS[light], rows, last, profile, problems)


def _row(d: Destination) -> Row:
    if d.overdue:
        light, state = RED, "OVERDUE: it has not received a backup for too long"
    elif not d.attached and d.kind == DRIVE:
        light, state = AMBER, "not plugged in"
    elif not d.attached:
        light, state = RED, "cannot be reached"
    elif d.last_snapshot is None:
        light, state = AMBER, "holds no backup yet"
    else:
        light, state = GREEN, "up to date"
    return Row(
        name=d.name,
        kind=_KINDS.get(d.kind, d.kind),
        light=light,
        attached="yes" if d.attached else "no",
        newest=_when(d.last_snapshot),
        age=_age(d.age_days),
        free=format_bytes(d.free_bytes) if d.free_bytes is not None else "unknown",
        state=state,
        note=d.note,
    )


def _when(iso: str | None) -> str:
    if iso is None:
        return "none"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%a %d %b %Y, %H:%M")
    except ValueError:
        return iso


def _age(days: float | None) -> str:
    if days is None:
        return "-"
    if days < 1:
        hours = round(days * 24)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{days:.1f} days"


def step_rows(record: RunRecord | None) -> list[Mapping[str, Any]]:
    """The last run's steps for the table: step, target, ok, message (missing keys blank)."""
    if record is None:
        return []
    rows: list[Mapping[str, Any]] = []
    for step in record.steps:
        if isinstance(step, dict):
            rows.append(
                {
                    "step": str(step.get("step", "")),
                    "target": str(step.get("target", "") or ""),
                    "ok": bool(step.get("ok")),
                    "message": str(step.get("message", "") or ""),
                }
            )
    return rows
