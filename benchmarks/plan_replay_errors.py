"""How far `dedupe plan` was off on replayed histories, night by night ahead: the measurements
behind `dedupe.plan.margin`, and the check that its margin covers what really came.

``python -m benchmarks.plan_replay_errors RUN_DIR:REPORT.json [RUN_DIR:REPORT.json ...]``

Each RUN_DIR is a `benchmarks.size_my_drive --keep --keep-at ...` work folder (repository copies
``repo-night-N``, password ``size-my-drive``) and REPORT.json its ``--out`` report (the real
size after every night); the report's file name (``run30m-s1``) names the run. For every copy,
the forecast this checkout makes from it is compared with the real size on every later night of
the run.

Printed: per forecast, the error on the run's last night, the likely range there and whether
the drive size before rounding (the forecast days times the margin) holds the real peak; then
the ratios per horizon, ready for `dedupe.plan.margin.MEASURED`; then the same coverage with a
table taken on the *other* runs only (leave one run out), since a margin measured on a run
covers that run by construction. A checkout without `dedupe.plan.margin` (before it existed) is
checked with its fixed margin (`Forecast.margin`, 30 %) and its 90 % band.

``--simulate FOLDER [--change-rate PCT]`` also replays `dedupe plan --simulate`: the forecast
made from FOLDER alone (the run's night 0, before any history; `dedupe.plan.simulate`) against
the real size of every night of each run, so the two can be compared on the same nights. For a
``size_my_drive --folder`` run, give the run's ``--change-rate``: its nights rewrite random
regions minutes apart, so the modification times say nothing of a night's change.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from benchmarks.plan_decompose import PRACTICE, open_repo
from dedupe import stats
from dedupe.cli.policy_args import add_policy_arguments, policy_from_args
from dedupe.plan import projection
from dedupe.plan.history import history_from_stats

try:
    from dedupe.plan import margin
except ImportError:  # a checkout before the measured margin
    margin = None  # type: ignore[assignment]

BUCKETS = (5, *range(10, 400, 10))


@dataclass
class Replayed:
    run: str
    night: int
    forecast: list[int]
    """Index = nights ahead (0 = the forecast night)."""
    se_low: list[int]
    se_high: list[int]
    real: list[int]
    fixed_margin: float | None
    data_growth: float = 0.0
    """Relative growth a day of the backed-up data over the history (oldest to newest)."""


def replay(run_dir: Path, report_path: Path, policy_flags: list[str]) -> list[Replayed]:
    """Every forecast of one run, with the real sizes of the nights after it."""
    ap = argparse.ArgumentParser()
    add_policy_arguments(ap)
    policy = policy_from_args(ap.parse_args(policy_flags))
    report = json.loads(report_path.read_text())
    real = {n["night"]: n["stored_bytes"] for n in report["nights"]}
    last = max(real)
    out = []
    for copy in sorted(run_dir.glob("repo-night-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])):
        night = int(copy.name.rsplit("-", 1)[1])
        if night >= last:
            continue
        result_stats = stats.collect(open_repo(copy))
        history, _left_out = history_from_stats(result_stats)
        first, newest = result_stats.usage[0], result_stats.usage[-1]
        span = max(1, (newest.snapshot.time - first.snapshot.time).days)
        growth = (newest.logical_bytes / max(1, first.logical_bytes)) ** (1 / span) - 1
        estimates = projection.estimate_groups(history)
        days = last - night
        result = projection.forecast(history, policy, days, estimates=estimates)
        low, high = projection.forecast_band(history, policy, days, estimates=estimates)
        out.append(
            Replayed(
                run=report_path.stem,
                night=night,
                forecast=[p.stored_bytes for p in result.series],
                se_low=list(low),
                se_high=list(high),
                real=[real[night + a] for a in range(days + 1)],
                fixed_margin=result.margin,
                data_growth=growth,
            )
        )
    return out


def measured_table(replays: list[Replayed]) -> tuple[tuple[int, float, float], ...]:
    """Per horizon H: the largest real peak / forecast peak and the smallest real / forecast
    over every forecast's first H nights (only horizons some forecast reaches)."""
    rows = []
    longest = max(len(r.forecast) - 1 for r in replays)
    for top in BUCKETS:
        highs, lows = [], []
        for r in replays:
            for ahead in range(1, min(top, len(r.forecast) - 1) + 1):
                peak = max(r.real[1 : ahead + 1]) / max(r.forecast[1 : ahead + 1])
                highs.append(max(peak, r.real[ahead] / r.forecast[ahead]))
                lows.append(r.real[ahead] / r.forecast[ahead])
        # Rounded outwards: a table rounded to the nearest would cut under its own worst case.
        rows.append(
            (
                min(top, longest),
                math.ceil(max(highs) * 1000) / 1000,
                math.floor(min(lows) * 1000) / 1000,
            )
        )
        if top >= longest:
            break
    return tuple(rows)


def needed(r: Replayed, table: tuple[tuple[int, float, float], ...] | None) -> float:
    """The drive size before rounding: every forecast day times its margin."""
    if table is None or margin is None:
        return max(r.forecast[1:]) * (r.fixed_margin or 1.0)
    return max(size * margin.high(d, table) for d, size in enumerate(r.forecast) if d)


def band_top(r: Replayed, table: tuple[tuple[int, float, float], ...] | None) -> int:
    d = len(r.forecast) - 1
    if table is None or margin is None:
        return r.se_high[d]
    return max(r.se_high[d], round(r.forecast[d] * margin.high(d, table)))


def coverage(replays: list[Replayed], tables: dict[str, object]) -> None:
    print(
        f"{'run':<12} {'night':>5} {'ahead':>5} {'real':>7} {'forecast':>15} {'band top':>9} "
        f"{'real peak':>9} {'needed':>8} {'x':>5} {'growth/d':>8} {'err/d/g':>7}  covers"
    )
    for r in replays:
        table = tables.get(r.run)
        d = len(r.forecast) - 1
        error = (r.forecast[d] - r.real[d]) / r.real[d]
        need = needed(r, table)  # type: ignore[arg-type]
        peak = max(r.real[1:])
        top = band_top(r, table)  # type: ignore[arg-type]
        print(
            f"{r.run:<12} {r.night:>5} {d:>5} {r.real[d] / 1e6:7.1f} "
            f"{r.forecast[d] / 1e6:7.1f} ({error * 100:+5.1f}%) {top / 1e6:9.1f} "
            f"{peak / 1e6:9.1f} {need / 1e6:8.1f} {need / max(r.forecast[1:]):5.2f} "
            f"{r.data_growth * 100:7.2f}% "
            f"{(r.real[d] / r.forecast[d] - 1) / d / max(r.data_growth, 1e-9):7.3f}  "
            f"{'yes' if need >= peak else 'NO'}{'' if top >= r.real[d] else ' (band misses)'}"
        )


def simulated(
    folder: Path, rate: float | None, report_path: Path, policy_flags: list[str]
) -> Replayed:
    """`plan --simulate` as it would have answered before night 0 of a run, with that run's
    real sizes."""
    from datetime import datetime

    from benchmarks.size_my_drive import night_time
    from dedupe.plan import simulate

    ap = argparse.ArgumentParser()
    add_policy_arguments(ap)
    policy = policy_from_args(ap.parse_args(policy_flags))
    report = json.loads(report_path.read_text())
    real = {n["night"]: n["stored_bytes"] for n in report["nights"]}
    last = max(real)
    start = datetime.fromisoformat(night_time(0)).astimezone()
    measure = simulate.measure_folder(folder, start.timestamp())
    change = simulate.nightly_change(measure, None if rate is None else rate / 100)
    history, estimates = simulate.simulated_history(measure, change, start)
    result = projection.forecast(history, policy, last, estimates=estimates)
    low, high = projection.forecast_band(history, policy, last, estimates=estimates)
    return Replayed(
        run=f"{report_path.stem} (simulate)",
        night=0,
        forecast=[p.stored_bytes for p in result.series],
        se_low=list(low),
        se_high=list(high),
        real=[real[a] for a in range(last + 1)],
        fixed_margin=result.margin,
    )


def errors(replays: list[Replayed]) -> None:
    """Per forecast: the error on the run's last night, the largest on any night checked, and
    the mean absolute error over the nights checked ((forecast - real) / real)."""
    head = f"{'run':<24} {'night':>5} {'ahead':>5} {'last night':>10} {'max |err|':>9}"
    print(f"{head} {'mean |err|':>10}")
    for r in replays:
        errs = [(f - x) / x for f, x in zip(r.forecast[1:], r.real[1:], strict=True)]
        print(
            f"{r.run:<24} {r.night:>5} {len(errs):>5} {errs[-1] * 100:+9.1f}% "
            f"{max(abs(e) for e in errs) * 100:8.1f}% "
            f"{sum(abs(e) for e in errs) / len(errs) * 100:9.1f}%"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="plan_replay_errors", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="RUN_DIR:REPORT.json")
    ap.add_argument("--policy", default=PRACTICE)
    ap.add_argument("--simulate", type=Path, metavar="FOLDER", help="also replay plan --simulate")
    ap.add_argument("--change-rate", type=float, metavar="PCT", help="with --simulate")
    args = ap.parse_args(argv)
    replays: list[Replayed] = []
    for run in args.runs:
        run_dir, report = run.split(":", 1)
        replays += replay(Path(run_dir), Path(report), shlex.split(args.policy))
    print("forecast errors, (forecast - real) / real, on the nights after each forecast:")
    checked = list(replays)
    if args.simulate:
        for run in args.runs:
            report = Path(run.split(":", 1)[1])
            policy = shlex.split(args.policy)
            checked.append(simulated(args.simulate, args.change_rate, report, policy))
    errors(checked)
    print()
    if margin is None:
        print("this checkout has no measured margin: its fixed margin and 90 % band\n")
        coverage(replays, {})
        return
    print("with the checkout's margin (dedupe.plan.margin.MEASURED):")
    coverage(replays, {r.run: margin.MEASURED for r in replays})
    table = measured_table(replays)
    print(f"\nmeasured on these {len(replays)} forecasts, for dedupe/plan/margin.py:")
    print(f"MEASURED = {table!r}")
    runs = sorted({r.run for r in replays})
    if len(runs) > 1:
        print("\nleave one run out (each run checked with the table of the others):")
        held = {run: measured_table([r for r in replays if r.run != run]) for run in runs}
        coverage(replays, held)


if __name__ == "__main__":
    main()
