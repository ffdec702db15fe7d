"""The nightly `dedupe run` for the machine's scheduler: systemd, launchd or cron.

`job` builds the job (absolute command, profile, time of day); `render` turns it into the
scheduler's text (systemd units, a launchd plist, a cron line), pure and marked as dedupe's;
`install` says where each scheduler keeps it and writes or removes exactly those files. Which
scheduler this machine has is `dedupe.platform.scheduler_kind`; running systemctl, launchctl or
crontab is `dedupe.cli.cmd_schedule`'s, through `dedupe.platform.run_tool`.
"""

from dedupe.schedule.install import Placement, files_for, installed, placement, remove, write
from dedupe.schedule.job import DEFAULT_AT, Job, dedupe_program, make_job, next_run, parse_at

__all__ = [
    "DEFAULT_AT",
    "Job",
    "Placement",
    "dedupe_program",
    "files_for",
    "installed",
    "make_job",
    "next_run",
    "parse_at",
    "placement",
    "remove",
    "write",
]
