"""`dedupe plan [POLICY] --days N`: forecast the repository size, and the drive to buy.

The shell around the pure `dedupe.plan.projection`: read the history with `dedupe.stats` (index and
trees, no data), turn it into a `History` (`dedupe.plan.history`), run the forecast, print it and
optionally draw the chart (`dedupe.plan.chart`). The POLICY flags and `--max-unused` are parsed
as `forget` and `gc` parse them (`policy_args`), and snapshots become `SnapshotInfo` through the
mapping `forget` uses (`retention.snapshot_info`), so the forecast prunes what `forget` would
prune. Without any keep rule `forget` refuses to run, so such a plan forecasts keeping everything.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

from dedupe import stats
from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.cli.policy_args import add_policy_arguments, parse_max_unused, policy_from_args
from dedupe.errors import DamageError, DedupeError, UsageError
from dedupe.plan import chart, projection
from dedupe.plan.history import PLAN_FIRST, PLAN_LAST, history_from_stats
from dedupe.retention import Policy

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
        default="30",
        metavar="PCT",
        help="safety margin on the peak for the drive size (default 30)",
    )
    p.add_argument("--chart", metavar="FILE.svg", help="draw the forecast as an SVG file")
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
    """One sentence per group: the estimators used and what they measured, in words."""
    host, paths = estimate.group
    where = f"{host} {' '.join(paths)}"
    if not estimate.nights_used:
        return f"{where}: only one snapshot, so no nightly estimate (nothing added)"
    text = (
        f"{where}: each night adds {human_bytes(estimate.nightly_bytes)}, the mean added bytes "
        f"of the last {estimate.nights_used} snapshot(s), the first (base) excluded"
    )
    if estimate.nights_capped:
        text += (
            f" ({estimate.nights_capped} unusually large night(s) counted at median + 5 robust "
            "standard deviations)"
        )
    if estimate.nightly_trend > 0:
        monthly = estimate.nightly_trend * projection.DAYS_PER_MONTH
        text += f", rising by {human_bytes(monthly)} a month (Sen's slope, significant at 90 %)"
    else:
        text += ", no significant rising trend"
    if not estimate.survival_measured:
        return text + "; nothing added is assumed ever to become unreferenced (not measurable yet)"
    shares = ", ".join(
        f"{round(100 * estimate.survive(k))} % after {k} day{'s' if k > 1 else ''}"
        for k in SURVIVAL_REPORT_DAYS
    )
    measured = len(estimate.survival) - 1
    return (
        f"{text}; of what a night adds, still referenced: {shares} (measured up to {measured} "
        f"day(s); beyond, a power-law tail fitted on them, (1 + days) ^ "
        f"-{estimate.tail_exponent:.3f})"
    )


def forecast_json(
    forecast: projection.Forecast, policy: Policy, growth: float, max_unused: float
) -> dict[str, Any]:
    peak = forecast.peak
    return {
        "days": len(forecast.series) - 1,
        "start": forecast.series[0].day.isoformat(),
        "start_bytes": forecast.series[0].stored_bytes,
        "peak_bytes": peak.stored_bytes,
        "peak_date": peak.day.isoformat(),
        "final_bytes": forecast.final.stored_bytes,
        "drive_bytes": forecast.drive_bytes,
        "margin": forecast.margin,
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
                }
                for e in forecast.estimates
            ],
        },
        "series": [
            {"date": p.day.isoformat(), "bytes": p.stored_bytes, "snapshots": p.snapshots}
            for p in forecast.series
        ],
    }


def cmd_plan(ctx: Context) -> int:
    args = ctx.args
    policy = policy_from_args(args)
    if not 1 <= args.days <= MAX_DAYS:
        raise UsageError(f"--days must be between 1 and {MAX_DAYS} (a century)")
    growth = _percent(args.growth, "--growth", -99)
    max_unused = parse_max_unused(args.max_unused)
    margin = 1.0 + _percent(args.margin, "--margin", 0)
    if args.chart and Path(args.chart).suffix.lower() != ".svg":
        raise UsageError("--chart writes SVG: give a file name ending in .svg")
    repo = ctx.repo()
    damaged: list[str] = []
    result = stats.collect(repo, damaged)
    history, left_out = history_from_stats(result)
    for snap in left_out:
        ctx.warn(
            f"snapshot {snap.short_id()} is left out of the forecast: its time "
            f"{snap.time.isoformat()} is outside {PLAN_FIRST.year}..{PLAN_LAST.year - 1} "
            "(its data is counted as staying); 'dedupe forget' can remove it"
        )
    if not history.snapshots:
        raise DedupeError("the repository has no snapshots yet: a forecast needs a history")
    forecast = projection.forecast(
        history,
        policy,
        args.days,
        growth_per_month=growth,
        max_unused=max_unused,
        margin=margin,
    )
    if args.chart:
        _write_chart(args.chart, forecast, policy, growth)
    if ctx.json:
        ctx.emit_json(forecast_json(forecast, policy, growth, max_unused))
    else:
        _print(ctx, forecast, policy, growth)
    for text in damaged:
        ctx.warn(text)
    if damaged:
        raise DamageError(
            f"{len(damaged)} snapshot manifest(s) are damaged and left out of the forecast; "
            "run 'dedupe check'"
        )
    return 0


def chart_title(policy: Policy, pruned: bool, days: int) -> str:
    rules = policy.describe() if pruned else "keep everything (no forget)"
    return f"dedupe plan, {days} days: {rules}"


def _write_chart(path: str, forecast: projection.Forecast, policy: Policy, growth: float) -> None:
    days = len(forecast.series) - 1
    nightly = sum(e.nightly_bytes for e in forecast.estimates)
    trend = sum(e.nightly_trend for e in forecast.estimates) * projection.DAYS_PER_MONTH
    subtitle = (
        f"nightly added {chart.format_bytes(nightly)}"
        + (f" + {chart.format_bytes(trend)}/month" if trend else "")
        + (f", growing {growth * 100:g} %/month" if growth else "")
        + f"; peak x {forecast.margin:g} -> drive {chart.format_bytes(forecast.drive_bytes)}"
    )
    svg = chart.render_svg(
        [(p.day, p.stored_bytes) for p in forecast.series],
        chart_title(policy, forecast.pruned, days),
        subtitle,
        forecast.drive_bytes,
    )
    try:
        Path(path).write_text(svg, encoding="utf-8")
    except OSError as exc:
        raise DedupeError(f"cannot write the chart to {path}: {exc.strerror}") from None


def _print(ctx: Context, forecast: projection.Forecast, policy: Policy, growth: float) -> None:
    days = len(forecast.series) - 1
    ctx.out(chart_title(policy, forecast.pruned, days))
    for estimate in forecast.estimates:
        ctx.out(f"estimate: {describe_estimate(estimate)}")
    if growth:
        ctx.out(f"growth: the nightly additions grow {growth * 100:g} % a month (compounded)")
    else:
        # Validation (docs/PLAN.md): most of the forecast's error is growth that had not started
        # when the forecast was made; only the user can know it is coming.
        ctx.out("growth: only what the history shows; pass --growth PCT if more data is coming")
    ctx.out("")
    ctx.out(f"  {'DATE':<10}  {'STORED':>10}  SNAPSHOTS")
    step = max(1, days // 12)
    shown: list[date] = []
    for i, point in enumerate(forecast.series):
        if i % step == 0 or i == days or point == forecast.peak:
            shown.append(point.day)
            mark = "  <- peak" if point == forecast.peak else ""
            ctx.out(
                f"  {point.day.isoformat():<10}  {human_bytes(point.stored_bytes):>10}  "
                f"{point.snapshots:>9}{mark}"
            )
    ctx.out("")
    ctx.out(f"today:  {human_bytes(forecast.series[0].stored_bytes)}")
    ctx.out(f"peak:   {human_bytes(forecast.peak.stored_bytes)} on {forecast.peak.day}")
    ctx.out(f"final:  {human_bytes(forecast.final.stored_bytes)} on {forecast.final.day}")
    ctx.out(
        f"drive:  {chart.format_bytes(forecast.drive_bytes)} (peak x {forecast.margin:g}, "
        "rounded up to a common drive size)"
    )
