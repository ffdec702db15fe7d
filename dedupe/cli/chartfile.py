"""The chart file of `plan --chart` and `stats --chart`: its format checked before any work, and
the drawn bytes written, with the same messages and exit codes for both commands.

The drawing module (`dedupe.plan.chart`, and matplotlib under it) is imported only here and
only when a chart is asked for, so neither command pays for it otherwise."""

from __future__ import annotations

from pathlib import Path

from dedupe.errors import DedupeError, UsageError


def chart_target(path: str) -> str:
    """The chart's format ('png' or 'svg'), checked with its folder before any work (wrong
    usage: exit 2; matplotlib missing: exit 1)."""
    from dedupe.plan import chart

    try:
        return chart.check_target(path)
    except chart.ChartError as exc:
        raise UsageError(f"--chart: {exc}") from None
    except chart.ChartUnavailable as exc:
        raise DedupeError(str(exc)) from None


def write_chart(path: str, content: bytes) -> None:
    try:
        Path(path).write_bytes(content)
    except OSError as exc:
        raise UsageError(
            f"cannot write the chart to {path}: {exc.strerror}; choose a folder you can write to"
        ) from None
