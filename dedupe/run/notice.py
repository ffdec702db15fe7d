"""The alert of a night, in words for the office: what went wrong, what to do, then detail.

Pure: it composes the title and body from the run's record; sending is `dedupe.alerts`'s. A
night with no failure and no warning sends nothing (quiet success: a mail every night would
bury the one that matters). Nothing here can hold a password: the steps' messages are what the
commands printed, and those never print one.
"""

from __future__ import annotations

import socket
from typing import Literal

from dedupe.run.state import RunRecord

Level = Literal["failure", "warning"]


def compose(record: RunRecord, log_file: str) -> tuple[str, str, Level] | None:
    """(title, body, level) for the night, or None when there is nothing to tell."""
    failed = [step for step in record.steps if not step.get("ok")]
    if not failed and not record.warnings:
        return None
    host = socket.gethostname()
    when = record.time[:16].replace("T", " ")
    lines: list[str] = []
    if failed:
        title = f"Backup FAILED on {host} ({len(failed)} step(s))"
        lines.append(
            f"The backup of {when} on {host} did not fully work: {len(failed)} step(s) failed. "
            "The other steps were still done. Fix what is named below before tonight, or ask "
            "your IT contact; backups that keep failing leave the practice unprotected."
        )
        lines.append("")
        lines.append("What failed:")
        lines.extend(
            f"- {step.get('step')} {step.get('target')}: {step.get('message')}" for step in failed
        )
    else:
        title = f"Backup done with warnings on {host}"
        lines.append(f"The backup of {when} on {host} was saved, but needs your attention:")
    if record.warnings:
        lines.append("")
        lines.append("Warnings:")
        lines.extend(f"- {text}" for text in record.warnings)
    lines.append("")
    lines.append(
        f"Details: the run log {log_file} on {host}, and 'dedupe status' there "
        f"(exit code {record.exit})."
    )
    return title, "\n".join(lines), "failure" if failed else "warning"
