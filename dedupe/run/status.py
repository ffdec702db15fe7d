"""`dedupe status`: every medium of the profile, live where it answers, else from the record.

For each medium: attached or not, the newest backup it holds, its age, overdue or not, and free
space. A drive that is plugged in and the repository and off-site copies are asked now (their
`snapshots`); a drive that is unplugged is described from what the last run recorded, so the
office can see that the Tuesday drive last got a backup seven weeks ago without finding it.
A rotating drive that is merely unplugged is not overdue; one not updated for more than
`overdue-days` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dedupe import platform
from dedupe.profile.model import Profile
from dedupe.run import media as media_mod
from dedupe.run.children import Children, Password
from dedupe.run.media import DRIVE, Medium
from dedupe.run.state import MediumRecord, RunRecord, State
from dedupe.run.verdict import days_between


@dataclass(frozen=True)
class Destination:
    """One row of `status` (the contract's `status --json` keys, plus `url` and `note`)."""

    name: str
    kind: str
    url: str
    attached: bool
    last_snapshot: str | None
    age_days: float | None
    overdue: bool
    free_bytes: int | None
    note: str  # how it was seen: "checked now", "from the run of ...", or why it is not attached

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "url": self.url,
            "attached": self.attached,
            "last_snapshot": self.last_snapshot,
            "age_days": self.age_days,
            "overdue": self.overdue,
            "free_bytes": self.free_bytes,
            "note": self.note,
        }


def destinations(
    profile: Profile,
    state: State,
    children: Children,
    passwords: Mapping[str, Password],
    now: datetime,
) -> list[Destination]:
    """Every medium's row; `passwords` maps a medium's name to its password source."""
    records = state.media()
    rows = []
    for medium in media_mod.profile_media(profile, {}, records):
        rows.append(_row(medium, records.get(medium.name), children, passwords, profile, now))
    return rows


def last_run_json(record: RunRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"time": record.time, "ok": record.ok, "exit": record.exit}


def _row(
    medium: Medium,
    record: MediumRecord | None,
    children: Children,
    passwords: Mapping[str, Password],
    profile: Profile,
    now: datetime,
) -> Destination:
    last_snapshot, note, reachable = None, "", False
    if medium.attached and not medium.new:
        live = newest_live(medium, children, passwords[medium.name])
        if isinstance(live, str) or live is None:
            reachable = True
            last_snapshot, note = live, "checked now"
        else:
            note = f"cannot be read now ({live[1]})"
    elif medium.new:
        note = "plugged in, new: the next run prepares it"
        reachable = True
    else:
        note = medium.why_not or "not attached"
    if not reachable or (last_snapshot is None and not medium.new and record is not None):
        if record is not None and record.last_snapshot and last_snapshot is None:
            last_snapshot = record.last_snapshot
            when = (record.last_copy or record.checked or "")[:16].replace("T", " ")
            note += f"; newest backup as recorded by the run of {when}" if when else ""
    free = _free(medium) if medium.attached else None
    if free is None and record is not None:
        free = record.free_bytes
    age = None
    if last_snapshot is not None:
        try:
            age = round(days_between(datetime.fromisoformat(last_snapshot), now), 1)
        except ValueError:
            age = None
    limit = profile.alerts.overdue_days
    last_update = last_snapshot
    if medium.kind == DRIVE and record is not None and record.last_copy:
        last_update = record.last_copy
    overdue = False
    if last_update is not None:
        try:
            overdue = days_between(datetime.fromisoformat(last_update), now) > limit
        except ValueError:
            overdue = False
    return Destination(
        name=medium.name,
        kind=medium.kind,
        url=medium.url,
        attached=medium.attached and (reachable or medium.new),
        last_snapshot=last_snapshot,
        age_days=age,
        overdue=overdue,
        free_bytes=free,
        note=note,
    )


def newest_live(
    medium: Medium, children: Children, password: Password
) -> str | None | tuple[int, str]:
    """The ISO time of the newest backup in `medium` (None: it holds none), or (exit code,
    message) when it cannot be read."""
    args = ["snapshots", "--json", "--repo", medium.url]
    if medium.s3_endpoint:
        args += ["--s3-endpoint", medium.s3_endpoint]
    result = children.run(args, {"DEDUPE_": password})
    data = result.json() if result.code == 0 else None
    if not isinstance(data, list):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        why = lines[-1].removeprefix("dedupe: ") if lines else f"exit code {result.code}"
        return (result.code, why)
    times = [str(item["time"]) for item in data if isinstance(item, dict) and "time" in item]
    if not times:
        return None
    return max(times, key=datetime.fromisoformat)


def _free(medium: Medium) -> int | None:
    folder = media_mod.local_path(medium.url)
    if folder is None:
        return None
    try:
        return platform.free_bytes(folder)
    except OSError:
        return None
