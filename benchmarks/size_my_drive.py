"""Size my drive: simulate nights of backups, measure what each adds, and forecast with `plan`.

``python benchmarks/size_my_drive.py (--folder DIR | --stream CMD | --corpus SIZE) [options]``
(or ``python -m benchmarks.size_my_drive ...`` from a source checkout)

It needs only an installed ``dedupe`` (it runs ``python -m dedupe``, the interpreter's own
installation): no source checkout, no PYTHONPATH. Only ``--corpus`` needs the checkout's
``benchmarks/corpus.py``.

An office uses the installed ``dedupe plan --simulate FOLDER`` (``dedupe.plan.simulate``: the
folder measured once, nothing written, the nightly change from the files' modification times);
this script is its check: it makes the nights for real. Each simulated night brings the
data to its next state, takes a snapshot into a temporary repository with ``--time`` set to that
night (23:00 local), then runs ``forget`` with the policy and ``gc``, as the nightly job would.
After ``--nights`` nights it asks ``dedupe plan`` for a forecast of ``--days`` days; the answer
printed last is ``plan`` on the whole simulated history (its own sentence, with
``--drive-size``), never a number of this script's own.

Where the nights come from:

- ``--corpus SIZE``: the benchmark corpus (``benchmarks.corpus``), night N from night N-1, with
  its own change model (dump rows updated and inserted, scans and files added, text edited).
- ``--folder DIR``: a copy of DIR; each night rewrites the change rate's share of its bytes
  as scattered 64 KiB regions of fresh random bytes (incompressible: the pessimistic case).
  The rate is measured, not guessed: the bytes of DIR's files modified in the last 30 days,
  a thirtieth of them a night (`measured_change_rate`); ``--change-rate`` overrides it.
- ``--stream CMD``: CMD's output (e.g. ``pg_dump practice``) is captured once, then changed
  the same way every night and backed up as a stream. One capture says nothing about how fast
  it changes, so ``--change-rate`` is required there.

``--validate N`` keeps going to night N and compares the forecast made after ``--nights`` nights
with the real size after N nights: the check of issue 7 (the forecast for day N - nights).
``--keep --keep-at 30,40,60`` also keeps copies of the repository after those nights, for
``benchmarks.plan_replay_errors`` (forecasts from each copy against every later night: the
measurements behind ``dedupe.plan.margin``) and ``benchmarks.plan_decompose``.

In a source checkout the temporary repository uses the tests' cheap key derivation
(``tests/cli_entry.py``) unless ``--real-kdf`` is given: sizes do not depend on it, and a night
then costs no Argon2id run. Without a checkout the installed ``dedupe`` runs with its real one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHEAP_ENTRY = ROOT / "tests" / "cli_entry.py"
REGION = 64 << 10
MEASURE_DAYS = 30
START = date(2026, 1, 5)  # the corpus's night 0; 90 nights cross three month ends
PRACTICE_POLICY = (
    "--keep-business-days 10 --keep-monthly unlimited --keep-quarterly unlimited "
    "--keep-yearly unlimited"
)


@dataclass
class Night:
    night: int
    date: str
    bytes_added: int
    stored_bytes: int
    snapshots: int
    seconds: float


@dataclass
class Report:
    source: str
    policy: str
    nights: list[Night] = field(default_factory=list)
    forecast: dict | None = None
    forecast_night: int = 0
    validation: dict | None = None
    early_estimate: str = ""
    """With --validate: the estimate of the forecast the validation checks."""
    answer: str = ""
    """`dedupe plan`'s own first sentence on the whole simulated history."""
    final_plan: dict | None = None
    """`dedupe plan --json` on the whole simulated history: what the answer says."""


class Dedupe:
    """The CLI against the temporary repository."""

    def __init__(self, work: Path, real_kdf: bool) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPE_")} | {
            "DEDUPE_REPO": str(work / "repo"),
            "DEDUPE_PASSWORD": "size-my-drive",
            "DEDUPE_CACHE_DIR": str(work / "cache"),
        }
        cheap = not real_kdf and CHEAP_ENTRY.exists() and (ROOT / "dedupe").is_dir()
        if cheap:  # a source checkout: its tests' entry, which imports the checkout
            self.env["PYTHONPATH"] = str(ROOT)
            self.argv = [sys.executable, str(CHEAP_ENTRY)]
        else:  # the interpreter's installed dedupe
            self.argv = [sys.executable, "-m", "dedupe"]

    def __call__(self, *args: str, stdin: bytes | None = None) -> str:
        proc = subprocess.run(
            [*self.argv, *args], input=stdin, capture_output=True, env=self.env, check=False
        )
        if proc.returncode != 0:
            sys.exit(f"dedupe {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr!r}")
        return proc.stdout.decode()

    def json(self, *args: str, stdin: bytes | None = None) -> dict:
        return json.loads(self(*args, "--json", stdin=stdin))


def mutate(path: Path, rate: float, rng: random.Random) -> None:
    """Rewrite `rate` of the file's bytes as scattered 64 KiB regions of fresh random bytes."""
    size = path.stat().st_size
    if size == 0:
        return
    regions = max(1, round(size * rate / REGION))
    with open(path, "r+b") as f:
        for _ in range(regions):
            offset = rng.randrange(max(1, size - REGION))
            f.seek(offset)
            f.write(rng.randbytes(min(REGION, size - offset)))


def mutate_folder(root: Path, rate: float, rng: random.Random) -> None:
    """Spread the rewritten bytes over the files in proportion to their size."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    sizes = [p.stat().st_size for p in files]
    total = sum(sizes)
    if not total:
        return
    budget = total * rate
    while budget > 0:
        (path,) = rng.choices(files, weights=sizes)
        mutate(path, min(1.0, REGION / max(1, path.stat().st_size)), rng)
        budget -= REGION


def measured_change_rate(root: Path, now: float, days: int = MEASURE_DAYS) -> float:
    """Percent of the folder's bytes rewritten a night, measured from its files' modification
    times: the bytes of files changed within the last `days` days, spread over those days.

    A file modified once counts whole (the conservative side: a backup stores its changed
    chunks, often less), a file changed every night counts once (an under-count the first
    night's snapshot would correct); it is the folder's own history, where a default rate
    would be a guess."""
    total = changed = 0
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        info = path.stat()
        total += info.st_size
        if now - info.st_mtime <= days * 86400:
            changed += info.st_size
    return 100.0 * changed / days / total if total else 0.0


def night_time(night: int) -> str:
    return f"{(START + timedelta(days=night)).isoformat()}T23:00:00"


def run(args: argparse.Namespace) -> Report:
    policy = shlex.split(args.policy)
    work = Path(tempfile.mkdtemp(prefix="size-my-drive-", dir=args.workdir))
    try:
        cli = Dedupe(work, args.real_kdf)
        cli("init")
        data = work / "data"
        rng = random.Random(args.seed)
        if args.folder:
            if args.change_rate is None:
                args.change_rate = measured_change_rate(args.folder, time.time())
                how = f"measured from the files changed in the last {MEASURE_DAYS} days"
            else:
                how = "as given"
            shutil.copytree(args.folder, data, symlinks=True)
            source = f"folder {args.folder}, {args.change_rate:.3g} % rewritten a night ({how})"
        elif args.stream:
            data.mkdir()
            captured = subprocess.run(args.stream, shell=True, capture_output=True, check=True)
            (data / "stream").write_bytes(captured.stdout)
            source = f"stream '{args.stream}', {args.change_rate} % rewritten a night"
        else:
            from benchmarks import corpus  # the checkout's corpus: only this mode needs it

            corpus.generate(data, corpus.parse_size(args.corpus), 0, args.seed)
            source = f"benchmark corpus {args.corpus} (its own nightly changes)"
        report = Report(source=source, policy=args.policy)
        last = args.validate or args.nights
        for night in range(0, last + 1):
            started = time.perf_counter()
            if night:
                if args.corpus:
                    corpus.generate(data, corpus.parse_size(args.corpus), night, args.seed)
                elif args.stream:
                    mutate(data / "stream", args.change_rate / 100, rng)
                else:
                    mutate_folder(data, args.change_rate / 100, rng)
            if args.stream:
                snap = cli.json(
                    "snapshot",
                    "-",
                    "--stdin-name",
                    "stream",
                    "--time",
                    night_time(night),
                    stdin=(data / "stream").read_bytes(),
                )
            else:
                snap = cli.json("snapshot", str(data), "--time", night_time(night))
            cli("forget", *policy)
            cli("gc", "--max-unused", args.max_unused)
            stats = cli.json("stats")
            report.nights.append(
                Night(
                    night,
                    night_time(night)[:10],
                    snap["bytes_added"],
                    stats["stored_bytes"],
                    stats["snapshots"],
                    round(time.perf_counter() - started, 2),
                )
            )
            print(
                f"night {night:3d} {night_time(night)[:10]}: added "
                f"{snap['bytes_added'] / 1e6:7.2f} MB, stored {stats['stored_bytes'] / 1e6:7.2f}"
                f" MB, {stats['snapshots']} snapshots",
                flush=True,
            )
            if night in args.keep_at and night != args.nights:
                shutil.copytree(work / "repo", work / f"repo-night-{night}")
            if night == args.nights:
                report.forecast_night = night
                if args.keep:  # the history the forecast saw, to re-run `plan` on later
                    shutil.copytree(work / "repo", work / f"repo-night-{night}")
                if args.validate:  # the forecast the later nights check
                    days = max(args.days, args.validate - night)
                    report.forecast = cli.json(
                        "plan", *policy, "--days", str(days), "--max-unused", args.max_unused
                    )
        if args.validate:
            report.validation = validate(report, args.validate)
            report.early_estimate = report.forecast["estimate"]["description"]
        # The answer: `plan` itself on the whole simulated history, as the office will run it.
        final = [*policy, "--days", str(args.days), "--max-unused", args.max_unused]
        final += ["--drive-size", args.drive_size] if args.drive_size else []
        report.final_plan = cli.json("plan", *final, *(["--chart", args.chart] * bool(args.chart)))
        report.answer = cli("plan", *final).splitlines()[0]
        return report
    finally:
        if args.keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def validate(report: Report, last: int) -> dict:
    """Forecast (made at `report.forecast_night`) against the measured sizes, night by night."""
    assert report.forecast is not None
    predicted = {p["date"]: p["bytes"] for p in report.forecast["series"]}
    rows = [
        (n.date, predicted[n.date], n.stored_bytes)
        for n in report.nights
        if n.night >= report.forecast_night and n.date in predicted
    ]
    errors = [(p - real) / real for _d, p, real in rows]
    final_date, final_pred, final_real = rows[-1]
    return {
        "forecast_made_after_night": report.forecast_night,
        "night": last,
        "date": final_date,
        "forecast_bytes": final_pred,
        "real_bytes": final_real,
        "error": round((final_pred - final_real) / final_real, 4),
        "max_abs_error_over_the_period": round(max(abs(e) for e in errors), 4),
        "peak_forecast_bytes": max(p for _d, p, _r in rows),
        "peak_real_bytes": max(r for _d, _p, r in rows),
    }


def print_summary(report: Report) -> None:
    added = sorted(n.bytes_added for n in report.nights[1:])
    print(f"\nsource: {report.source}\npolicy: {report.policy}")
    if added:
        print(
            f"added per night (base excluded): median {added[len(added) // 2] / 1e6:.2f} MB, "
            f"min {added[0] / 1e6:.2f} MB, max {added[-1] / 1e6:.2f} MB"
        )
    if report.final_plan:
        f = report.final_plan
        print(
            f"plan on the whole history ({len(report.nights)} nights), {f['days']} days: "
            f"peak {f['peak_bytes'] / 1e6:.1f} MB on {f['peak_date']}, final "
            f"{f['final_bytes'] / 1e6:.1f} MB"
        )
        print(f"estimate: {f['estimate']['description']}")
    if report.validation:
        v = report.validation
        print(
            f"validation: after night {v['night']} ({v['date']}) the forecast made after night "
            f"{v['forecast_made_after_night']} said {v['forecast_bytes'] / 1e6:.2f} MB, the "
            f"repository holds {v['real_bytes'] / 1e6:.2f} MB: error {v['error'] * 100:+.1f} % "
            f"(largest on any night {v['max_abs_error_over_the_period'] * 100:.1f} %)"
        )
        print(f"estimate after night {v['forecast_made_after_night']}: {report.early_estimate}")
    if report.answer:
        print(f"\n{report.answer}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="size_my_drive", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", type=Path, help="a folder to back up")
    src.add_argument("--stream", metavar="CMD", help="a command whose output is backed up")
    src.add_argument("--corpus", metavar="SIZE", help="the benchmark corpus of this size (30M)")
    ap.add_argument("--nights", type=int, default=20, help="nights before the forecast (20)")
    ap.add_argument("--days", type=int, default=365, help="days to forecast (365)")
    ap.add_argument(
        "--change-rate",
        type=float,
        help="percent of the bytes rewritten a night: required with --stream; for --folder "
        f"measured from the files changed in the last {MEASURE_DAYS} days unless given",
    )
    ap.add_argument("--drive-size", metavar="SIZE", help="the drive to check (as labelled: 2T)")
    ap.add_argument("--policy", default=PRACTICE_POLICY, help="POLICY flags, quoted")
    ap.add_argument("--max-unused", default="10", help="gc --max-unused (10)")
    ap.add_argument(
        "--validate",
        type=int,
        metavar="N",
        help="go on to night N and compare the forecast with the real size",
    )
    ap.add_argument("--chart", help="write plan's chart of the whole history here (.png or .svg)")
    ap.add_argument("--out", type=Path, help="write the report as JSON")
    ap.add_argument("--workdir", help="where the temporary repository goes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary repository, and a copy as it was at the forecast night",
    )
    ap.add_argument(
        "--keep-at",
        type=lambda text: {int(n) for n in text.split(",") if n},
        default=set(),
        metavar="N,N,...",
        help="with --keep, also copy the repository as it was after these nights (replays)",
    )
    ap.add_argument("--real-kdf", action="store_true", help="use the real key derivation")
    args = ap.parse_args(argv)
    if args.validate is not None and args.validate <= args.nights:
        ap.error("--validate N needs N greater than --nights")
    if args.stream and args.change_rate is None:
        ap.error(
            "--stream needs --change-rate PCT: one capture of the stream cannot tell how fast "
            "it changes (compare two nights' dumps, or start with 2)"
        )
    report = run(args)
    print_summary(report)
    if args.out:
        args.out.write_text(json.dumps(asdict(report), indent=2) + "\n")


if __name__ == "__main__":
    main()
