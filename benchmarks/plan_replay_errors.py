"""How far `dedupe plan` was off on replayed histories, night by night ahead: the measurements
behind `dedupe.plan.margin`.

``python -m benchmarks.plan_replay_errors RUN_DIR:REPORT.json [RUN_DIR:REPORT.json ...]``

Each RUN_DIR is a `benchmarks.size_my_drive --keep --keep-at ...` work folder (repository copies
``repo-night-N``, password ``size-my-drive``) and REPORT.json its ``--out`` report (the real
size after every night). For every copy, the forecast this checkout makes from it is compared
with the real size on every later night of the run: the ratio real / forecast at each horizon
(nights ahead). `--json` writes every point; the table shows the worst (largest) ratio per
horizon bucket, which is what a margin must cover. `--margin` also checks the margin the checkout
would add (`dedupe.plan.margin`): the largest real size over the nights ahead against the
forecast's peak with that margin.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from benchmarks.plan_decompose import PRACTICE, open_repo
from dedupe import stats
from dedupe.cli.policy_args import add_policy_arguments, policy_from_args
from dedupe.plan import projection
from dedupe.plan.history import history_from_stats

BUCKETS = (10, 20, 30, 45, 60, 90, 120, 150, 200)


def replay_points(run_dir: Path, report_path: Path, policy_flags: list[str]) -> list[dict]:
    """Every (forecast night, night ahead) of one run: real and forecast size, band ends."""
    ap = argparse.ArgumentParser()
    add_policy_arguments(ap)
    policy = policy_from_args(ap.parse_args(policy_flags))
    report = json.loads(report_path.read_text())
    real = {n["night"]: n["stored_bytes"] for n in report["nights"]}
    last = max(real)
    label = report_path.stem  # e.g. run30m-s1
    points = []
    for copy in sorted(run_dir.glob("repo-night-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])):
        night = int(copy.name.rsplit("-", 1)[1])
        if night >= last:
            continue
        history, _left_out = history_from_stats(stats.collect(open_repo(copy)))
        estimates = projection.estimate_groups(history)
        days = last - night
        result = projection.forecast(history, policy, days, estimates=estimates)
        low, high = projection.forecast_band(history, policy, days, estimates=estimates)
        for ahead in range(1, days + 1):
            points.append(
                {
                    "run": label,
                    "night": night,
                    "ahead": ahead,
                    "real": real[night + ahead],
                    "forecast": result.series[ahead].stored_bytes,
                    "low": low[ahead],
                    "high": high[ahead],
                    "peak_real": max(real[night + a] for a in range(1, ahead + 1)),
                    "peak_forecast": max(p.stored_bytes for p in result.series[1 : ahead + 1]),
                }
            )
    return points


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="plan_replay_errors", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="RUN_DIR:REPORT.json")
    ap.add_argument("--policy", default=PRACTICE)
    ap.add_argument("--json", type=Path, help="write every point here")
    args = ap.parse_args(argv)
    points: list[dict] = []
    for run in args.runs:
        run_dir, report = run.split(":", 1)
        points += replay_points(Path(run_dir), Path(report), shlex.split(args.policy))
    if args.json:
        args.json.write_text(json.dumps(points) + "\n")
    print(f"{'run':<28} {'night':>5} {'ahead':>5} {'real MB':>8} {'fcst MB':>8} {'error':>7}")
    for p in points:
        if p["ahead"] in BUCKETS or p == max(
            (q for q in points if q["run"] == p["run"] and q["night"] == p["night"]),
            key=lambda q: q["ahead"],
        ):
            error = (p["forecast"] - p["real"]) / p["real"]
            print(
                f"{p['run']:<28} {p['night']:>5} {p['ahead']:>5} {p['real'] / 1e6:8.1f} "
                f"{p['forecast'] / 1e6:8.1f} {error * 100:+6.1f}%"
                f"  band {p['low'] / 1e6:.1f}-{p['high'] / 1e6:.1f}"
            )
    print("\nreal / forecast by horizon (high: worst peak ratio; low: lowest ratio):")
    rows = []
    for top in BUCKETS:
        within = [p for p in points if p["ahead"] <= top]
        if not within or (rows and max(p["ahead"] for p in within) < top):
            break
        worst = max(within, key=lambda p: p["peak_real"] / p["peak_forecast"])
        ratio = worst["peak_real"] / worst["peak_forecast"]
        least = min(p["real"] / p["forecast"] for p in within)
        rows.append((top, round(ratio, 3), round(least, 3)))
        print(
            f"  up to {top:3d} nights: high {ratio:.3f} ({worst['run']}, night "
            f"{worst['night']}), low {least:.3f}"
        )
    forecasts = {(p["run"], p["night"]) for p in points}
    print(f"\nfor dedupe/plan/margin.py ({len(forecasts)} forecasts):")
    print(f"MEASURED = {tuple(rows)!r}")


if __name__ == "__main__":
    main()
