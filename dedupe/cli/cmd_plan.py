"""`dedupe plan [POLICY] --days N`: forecast the repository size, and the drive to buy.

The shell around the pure `dedupe.plan.projection`: read the history with `dedupe.stats` (index and
trees, no data), turn it into a `History` (`dedupe.plan.history`), run the forecast, print it and
optionally draw the chart (`dedupe.plan.chart`, PNG or SVG by the file's suffix; a bad name or
an unwritable folder is refused before any work). With `--simulate FOLDER` there is no history
to read: `dedupe.plan.simulate` measures the folder and the forecast runs on that instead.
The POLICY flags and `--max-unused` are parsed as `forget` and `gc` parse them (`policy_args`),
and snapshots become `SnapshotInfo` through the mapping `forget` uses
(`retention.snapshot_info`), so the forecast prunes what `forget` would prune. Without any
keep rule `forget` refuses to run, so such a plan forecasts keeping everything.

The text output is one sentence first (the drive to buy, or when `--drive-size` fills), then the
numbers, then "how this was estimated" with the statistics; `--verbose` adds the day table. All
sizes are decimal (MB, GB, TB), as drives are labelled, in the text, the JSON's words and the
chart alike.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from dedupe import stats
from dedupe.cli.chartfile import chart_target, write_chart
from dedupe.cli.context import Context, Subparsers
from dedupe.cli.policy_args import add_policy_arguments, parse_max_unused, policy_from_args
from dedupe.errors import DamageError, DedupeError, UsageError
from dedupe.plan import chart, drive, projection, simulate
from dedupe.plan import margin as plan_margin
from dedupe.plan.estimate import History
from dedupe.plan.history import PLAN_FIRST, PLAN_LAST, history_from_stats
from dedupe.retention import Policy
from dedupe.units import format_bytes

SURVIVAL_REPORT_DAYS = (1, 7, 30, 365)
MAX_DAYS = 36500
"""A century: a forecast replays every night, so `--days` needs a bound (each night costs a
policy run over every kept snapshot)."""


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "plan",
        parents=[common],
        help="forecast the repository size under a retention policy",
        description="Replay the policy night by night from the newest snapshot on, each night "
        "adding what recent nights added (the mean of the last 30, the first snapshot "
        "excluded, and their trend when it is significantly rising), with forget and gc after "
        "every night; print the size every day, the peak, the final size and the drive size "
        "to buy.",
    )
    p.add_argument("--days", type=int, required=True, metavar="N", help="nights to forecast")
    p.add_argument(
        "--growth",
        default="0",
        metavar="PCT",
        help="the nightly additions grow by PCT percent a month, compounded, on top of any "
        "measured trend (default 0)",
    )
    p.add_argument(
        "--max-unused",
        default="10",
        metavar="PCT",
        help="the gc setting the office runs with (default 10, as gc's default)",
    )
    p.add_argument(
        "--margin",
        metavar="PCT",
        help="safety margin on the forecast for the drive size (default: the largest "
        "under-estimate measured on replayed histories, growing with the nights ahead)",
    )
    p.add_argument(
        "--drive-size",
        metavar="SIZE",
        help="the drive's size as labelled (decimal: 500G, 2T, 1.5T); say on which date it "
        "fills, or that it does not within --days",
    )
    p.add_argument(
        "--chart",
        metavar="FILE",
        help="draw the history, the forecast with its likely range and the drive: a picture "
        "(FILE.png) or a web page's drawing (FILE.svg)",
    )
    p.add_argument(
        "--simulate",
        metavar="FOLDER",
        help="no history yet: measure what a first backup of FOLDER would store (read once, "
        "nothing written) and how much of it changes a night (from the files' modification "
        "times in the last 30 days, or --change-rate), and forecast from that",
    )
    p.add_argument(
        "--change-rate",
        metavar="PCT",
        help="with --simulate: the share of the folder's bytes that changes a night, in "
        "scattered pieces as a database or mailbox changes, instead of the change measured "
        "from the modification times",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also print the forecast day by day (a table)"
    )
    add_policy_arguments(p)
    p.set_defaults(handler=cmd_plan)


def _percent(text: str, flag: str, low: float) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise UsageError(f"invalid {flag} {text!r}: give a percentage, e.g. 5") from None
    if not low <= value <= 1000:
        raise UsageError(f"{flag} must be between {low:g} and 1000 (percent)")
    return value / 100.0


def describe_estimate(estimate: projection.GroupEstimate) -> str:
    """One sentence per group: what its history measured, in words, the estimators named after."""
    host, paths = estimate.group
    where = f"{host} {' '.join(paths)}"
    if not estimate.nights_used:
        return f"{where}: only one backup so far, so nothing is assumed to be added each night"
    text = (
        f"{where}: a night adds about {format_bytes(estimate.nightly_bytes)} "
        f"(the average of the last {estimate.nights_used} backups, the first excluded"
    )
    if estimate.nightly_error:
        text += f", give or take {format_bytes(projection.BAND_Z * estimate.nightly_error)}"
    text += ")"
    if estimate.nights_capped:
        text += (
            f"; {estimate.nights_capped} unusually large night(s) counted at median + 5 robust "
            "standard deviations"
        )
    if estimate.nightly_trend > 0:
        monthly = estimate.nightly_trend * projection.DAYS_PER_MONTH
        text += f", and that rises by {format_bytes(monthly)} a month (Sen's slope, 90 %)"
    if not estimate.survival_measured:
        text += "; all of it is assumed to stay (not measurable yet)"
    else:
        shares = ", ".join(
            f"{round(100 * estimate.survive(k))} % after {k} day{'s' if k > 1 else ''}"
            for k in SURVIVAL_REPORT_DAYS
        )
        text += (
            f"; of that, still needed: {shares} (measured over "
            f"{len(estimate.survival) - 1} day(s), a power-law tail beyond, exponent "
            f"{estimate.tail_exponent:.2f})"
        )
    if estimate.standing_measured:
        shares = ", ".join(
            f"{round(100 * estimate.stand(k))} % after {k} day{'s' if k > 1 else ''}"
            for k in SURVIVAL_REPORT_DAYS
        )
        text += f"; of the data backups share with older ones, still needed: {shares}"
    else:
        text += "; the data backups share with older ones is assumed to stay"
    return text


def forecast_json(
    forecast: projection.Forecast,
    policy: Policy,
    growth: float,
    max_unused: float,
    band: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    drive_bytes: int | None = None,
) -> dict[str, Any]:
    peak = forecast.peak
    drive_bytes = forecast.drive_bytes if drive_bytes is None else drive_bytes
    full = drive.full_date(forecast.series, drive_bytes)
    low, high = band or ([p.stored_bytes for p in forecast.series],) * 2
    return {
        "days": len(forecast.series) - 1,
        "start": forecast.series[0].day.isoformat(),
        "start_bytes": forecast.series[0].stored_bytes,
        "peak_bytes": peak.stored_bytes,
        "peak_date": peak.day.isoformat(),
        "final_bytes": forecast.final.stored_bytes,
        "drive_bytes": drive_bytes,
        "drive_full_date": None if full is None else full.isoformat(),
        "recommended_drive_bytes": forecast.drive_bytes,
        "needed_bytes": forecast.needed_bytes,
        "margin": round(forecast.needed[1], 4),
        "margin_source": "given" if forecast.margin is not None else "measured on replays",
        "margin_measured_days_ahead": plan_margin.MEASURED_AHEAD,
        "policy": policy.describe() if forecast.pruned else "(no keep rule: nothing forgotten)",
        "growth_percent_per_month": round(growth * 100, 4),
        "max_unused_percent": round(max_unused * 100, 4),
        "estimate": {
            "description": "; ".join(describe_estimate(e) for e in forecast.estimates),
            "model": "see the docstring of dedupe/plan/projection.py",
            "groups": [
                {
                    "host": e.group[0],
                    "paths": list(e.group[1]),
                    "nightly_added_bytes": round(e.nightly_bytes),
                    "nightly_estimator": "mean, outliers capped at median + 5 robust SD",
                    "nights_used": e.nights_used,
                    "nights_capped": e.nights_capped,
                    "nightly_trend_bytes_per_day": round(e.nightly_trend),
                    "trend_estimator": "Sen's slope if its 90 % interval is above 0, else 0",
                    "survival": {str(k): round(e.survive(k), 4) for k in SURVIVAL_REPORT_DAYS},
                    "survival_measured": e.survival_measured,
                    "survival_measured_days": len(e.survival) - 1,
                    "survival_tail": "S(K) * ((1 + K) / (1 + days)) ** exponent",
                    "survival_tail_exponent": round(e.tail_exponent, 4),
                    "standing": {str(k): round(e.stand(k), 4) for k in SURVIVAL_REPORT_DAYS},
                    "standing_measured": e.standing_measured,
                    "standing_tail_exponent": round(e.standing_exponent, 4),
                    "nightly_standard_error_bytes": round(e.nightly_error),
                }
                for e in forecast.estimates
            ],
        },
        "series": [
            {
                "date": p.day.isoformat(),
                "bytes": p.stored_bytes,
                "low_bytes": lo,
                "high_bytes": hi,
                "snapshots": p.snapshots,
            }
            for p, lo, hi in zip(forecast.series, low, high, strict=True)
        ],
    }


def cmd_plan(ctx: Context) -> int:
    args = ctx.args
    policy = policy_from_args(args)
    if not 1 <= args.days <= MAX_DAYS:
        raise UsageError(f"--days must be between 1 and {MAX_DAYS} (a century)")
    growth = _percent(args.growth, "--growth", -99)
    max_unused = parse_max_unused(args.max_unused)
    margin = None if args.margin is None else 1.0 + _percent(args.margin, "--margin", 0)
    drive_bytes = None
    if args.drive_size is not None:
        try:
            drive_bytes = drive.parse_drive_size(args.drive_size)
        except drive.SizeError as exc:
            raise UsageError(f"--drive-size: {exc}") from None
    chart_fmt = chart_target(args.chart) if args.chart else None
    if args.change_rate is not None and args.simulate is None:
        raise UsageError("--change-rate goes with --simulate FOLDER (a history measures its own)")
    damaged: list[str] = []
    measured: tuple[simulate.FolderMeasure, simulate.NightlyChange] | None = None
    if args.simulate is not None:
        rate = None if args.change_rate is None else _percent(args.change_rate, "--change-rate", 0)
        history, estimates, measured = _simulated(ctx, Path(args.simulate), rate)
    else:
        history, left_out = history_from_stats(stats.collect(ctx.repo(), damaged))
        for snap in left_out:
            ctx.warn(
                f"snapshot {snap.short_id()} is left out of the forecast: its time "
                f"{snap.time.isoformat()} is outside {PLAN_FIRST.year}..{PLAN_LAST.year - 1} "
                "(its data is counted as staying); 'dedupe forget' can remove it"
            )
        if not history.snapshots:
            raise DedupeError(
                "the repository has no snapshots yet: a forecast needs a history; "
                "'dedupe plan --simulate FOLDER' forecasts from the folder itself"
            )
        estimates = projection.estimate_groups(history)
    options: dict[str, Any] = {"growth_per_month": growth, "max_unused": max_unused}
    forecast = projection.forecast(
        history, policy, args.days, margin=margin, estimates=estimates, **options
    )
    band = projection.forecast_band(history, policy, args.days, estimates=estimates, **options)
    band = plan_margin.widen(tuple(p.stored_bytes for p in forecast.series), band)
    plan = Plan(forecast, band, drive_bytes, policy, growth, measured)
    if args.chart and chart_fmt is not None:
        past = () if measured else projection.past_sizes(history)
        _write_chart(args.chart, chart_fmt, plan, past)
    if ctx.json:
        out = forecast_json(forecast, policy, growth, max_unused, band, drive_bytes)
        if measured is not None:
            out["simulated"] = _simulated_json(*measured)
        ctx.emit_json(out)
    else:
        _print(ctx, plan, args.verbose)
    for text in damaged:
        ctx.warn(text)
    if damaged:
        raise DamageError(
            f"{len(damaged)} snapshot manifest(s) are damaged and left out of the forecast; "
            "run 'dedupe check'"
        )
    return 0


@dataclass(frozen=True)
class Plan:
    """A forecast with what the words and the chart need besides it."""

    forecast: projection.Forecast
    band: tuple[tuple[int, ...], tuple[int, ...]]
    drive_bytes: int | None
    policy: Policy
    growth: float
    simulated: tuple[simulate.FolderMeasure, simulate.NightlyChange] | None = None

    @property
    def days(self) -> int:
        return len(self.forecast.series) - 1

    def headline(self) -> str:
        series = self.forecast.series
        full = early = None
        if self.drive_bytes is not None:
            full = drive.full_date(series, self.drive_bytes)
            early_day = drive.days_until_full(self.band[1], self.drive_bytes)
            early = None if early_day is None else series[early_day].day
        return drive.headline(
            today_bytes=series[0].stored_bytes,
            peak_bytes=self.forecast.peak.stored_bytes,
            peak_day=self.forecast.peak.day,
            days=self.days,
            recommended_bytes=self.forecast.drive_bytes,
            drive_bytes=self.drive_bytes,
            full_day=full,
            start=series[0].day,
            early_full_day=early,
        )


def margin_words(forecast: projection.Forecast) -> str:
    """How the drive size follows from the forecast: "plan with a margin of X % measured on
    replays" (or the margin given), and on which day's size."""
    point, factor = forecast.needed
    percent = round((factor - 1) * 100)
    on = f"{format_bytes(point.stored_bytes)} on {point.day}"
    if forecast.margin is not None:
        return f"{on} plus the {percent} % margin given, rounded up to a size sold"
    ahead = (point.day - forecast.series[0].day).days
    text = (
        f"plan with a margin of {percent} % measured on replays: {on}, {ahead} days ahead, "
        f"plus the largest under-estimate seen that far ahead, rounded up to a size sold"
    )
    if ahead > plan_margin.MEASURED_AHEAD:
        text += (
            f"; replays were checked up to {plan_margin.MEASURED_AHEAD} days ahead, beyond "
            "that the margin grows on at its average measured pace"
        )
    return text


def chart_title(policy: Policy, pruned: bool, days: int) -> str:
    """ "Backup disk, next 12 months, policy: 10 business days + month, quarter and year ends"."""
    months = round(days / projection.DAYS_PER_MONTH)
    span = f"next {months} months" if days >= 60 else f"next {days} days"
    return f"Backup disk, {span}, policy: {drive.policy_words(policy, pruned)}"


def _write_chart(path: str, fmt: str, plan: Plan, past: tuple[tuple[date, int], ...]) -> None:
    forecast = plan.forecast
    data = chart.ForecastData(
        series=[(p.day, p.stored_bytes) for p in forecast.series],
        title=chart_title(plan.policy, forecast.pruned, plan.days),
        subtitle=plan.headline(),
        drive_bytes=plan.drive_bytes if plan.drive_bytes is not None else forecast.drive_bytes,
        drive_label="your drive" if plan.drive_bytes is not None else "drive to buy",
        band=plan.band,
        past=past,
    )
    write_chart(path, chart.forecast_chart(data, fmt))


def _simulated(
    ctx: Context, folder: Path, rate: float | None
) -> tuple[History, tuple[projection.GroupEstimate, ...], tuple[Any, Any]]:
    if not folder.exists():
        raise UsageError(f"--simulate {folder}: no such folder; give the folder to back up")
    try:
        measure = simulate.measure_folder(folder, time.time())
    except simulate.SimulateError as exc:
        raise UsageError(f"--simulate: {exc}") from None
    for problem in measure.unreadable:
        ctx.warn(f"could not read {problem}: left out of the measurement")
    if rate is None and measure.changed[0] > measure.raw_bytes / 2:
        ctx.warn(
            f"most of {folder} was modified within the last day (a fresh copy, or files whose "
            "times were reset?), so its modification times say little about a normal night; "
            "if that is not a normal night, give --change-rate PCT"
        )
    if rate is None and measure.changed[-1] == 0:
        ctx.warn(
            f"no file in {folder} was modified in the last {len(measure.changed)} days, so the "
            "forecast assumes nothing changes; if it is a copy whose times were kept, or data "
            "will start coming in, give --change-rate PCT"
        )
    change = simulate.nightly_change(measure, rate)
    when = simulate.night_of(datetime.now().astimezone())
    history, estimates = simulate.simulated_history(measure, change, when)
    return history, estimates, (measure, change)


def _simulated_json(
    measure: simulate.FolderMeasure, change: simulate.NightlyChange
) -> dict[str, Any]:
    return {
        "folder": measure.folder,
        "files": measure.files,
        "file_bytes": measure.raw_bytes,
        "first_backup_bytes": measure.stored_bytes,
        "nightly_bytes": round(change.nightly_bytes),
        "nightly_rewritten_bytes": round(change.rewritten_bytes),
        "nightly_kept_bytes": round(change.kept_bytes),
        "nightly_source": change.source,
        "changed_bytes_by_days": list(measure.changed),
    }


def _print(ctx: Context, plan: Plan, verbose: bool) -> None:
    forecast = plan.forecast
    ctx.out(plan.headline())
    ctx.out("")
    ctx.out(chart_title(plan.policy, forecast.pruned, plan.days))
    today, peak, final = forecast.series[0], forecast.peak, forecast.final
    low, high = plan.band
    peak_i = forecast.series.index(peak)
    ctx.out(f"  today:  {format_bytes(today.stored_bytes)} on {today.day}")
    ctx.out(
        f"  peak:   {format_bytes(peak.stored_bytes)} on {peak.day} "
        f"(likely {format_bytes(low[peak_i])} to {format_bytes(high[peak_i])})"
    )
    ctx.out(
        f"  final:  {format_bytes(final.stored_bytes)} on {final.day} "
        f"(likely {format_bytes(low[-1])} to {format_bytes(high[-1])})"
    )
    ctx.out(f"  drive:  {format_bytes(forecast.drive_bytes)} ({margin_words(forecast)})")
    if verbose:
        ctx.out("")
        ctx.out(f"  {'DATE':<10}  {'STORED':>10}  {'LIKELY':>21}  BACKUPS")
        step = max(1, plan.days // 12)
        for i, point in enumerate(forecast.series):
            if i % step == 0 or i == plan.days or point == peak:
                mark = "  <- peak" if point == peak else ""
                likely = f"{format_bytes(low[i])} - {format_bytes(high[i])}"
                ctx.out(
                    f"  {point.day.isoformat():<10}  {format_bytes(point.stored_bytes):>10}  "
                    f"{likely:>21}  {point.snapshots:>7}{mark}"
                )
    ctx.out("")
    ctx.out("how this was estimated:")
    ctx.out(
        "  every night from now on is replayed: a backup adds what recent nights added, the "
        "policy forgets what it would forget and gc frees what no kept backup needs; the likely "
        "range spans the 90 % interval of the nightly average and the errors measured on "
        "replayed histories (docs/PLAN.md)"
    )
    if plan.simulated is not None:
        for line in simulate.describe(*plan.simulated):
            ctx.out(line)
    else:
        for estimate in forecast.estimates:
            ctx.out(f"  {describe_estimate(estimate)}")
    if plan.growth:
        ctx.out(
            f"  growth: the nightly additions grow {plan.growth * 100:g} % a month (compounded)"
        )
    else:
        # Validation (docs/PLAN.md): most of the forecast's error is growth that had not started
        # when the forecast was made; only the user can know it is coming.
        ctx.out("  growth: only what the history shows; pass --growth PCT if more data is coming")
