"""The pure judgements of a run: which drive warnings apply tonight, when a drive is overdue,
which check slice tonight reads, and the one exit code of the night (the contract: 0 when every
step succeeded without a warning, 3 with warnings, else the exit code of the first step that
failed). Time is always passed in, so every rule is testable with any calendar."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CHECK_SLICES = 7  # a week of nights reads all the data once


@dataclass(frozen=True)
class StepResult:
    """One step as `run --json` shows it (`step`, `target`, `ok`, `message`), with the exit code
    of the command behind it and whether it succeeded with a warning (exit 3)."""

    step: str
    target: str
    ok: bool
    message: str
    exit: int = 0
    warned: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "step": self.step,
            "target": self.target,
            "ok": self.ok,
            "message": self.message,
            "exit": self.exit,
        }


def run_exit_code(steps: Sequence[StepResult], warnings: Sequence[str]) -> int:
    for step in steps:
        if not step.ok:
            return step.exit or 1
    return 3 if warnings or any(step.warned for step in steps) else 0


def check_slice(day: date) -> str:
    """Tonight's `--read-data-subset` part: seven nights in a row read every pack once."""
    return f"{day.toordinal() % CHECK_SLICES + 1}/{CHECK_SLICES}"


def days_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds() / 86400


def is_overdue(last_update: datetime | None, now: datetime, overdue_days: int) -> bool:
    """A medium not updated for more than `overdue_days` is overdue; one never updated is
    judged by the caller (a drive new to the profile is not overdue on its first nights)."""
    return last_update is not None and days_between(last_update, now) > overdue_days


def weekday_list(weekdays: frozenset[int]) -> str:
    return ", ".join(WEEKDAY_NAMES[day] for day in sorted(weekdays))
