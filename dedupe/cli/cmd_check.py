"""`dedupe check`: verify the repository; damage exits 14 with the snapshots and files it costs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import date

from dedupe.check.checker import Subset, run_check
from dedupe.check.report import CheckReport
from dedupe.cli.context import Context, Subparsers, human_bytes, printable
from dedupe.errors import DamageError, UsageError


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "check",
        parents=[common],
        help="verify the repository (with --read-data: decrypt and verify every byte)",
    )
    p.add_argument("--read-data", action="store_true", help="read every pack and verify every blob")
    p.add_argument(
        "--read-data-subset",
        metavar="N/M|P%",
        help="read only the N-th of M parts of the data (1/7 ... 7/7 cover it all), or P%% "
        "of the packs chosen afresh each day",
    )
    p.set_defaults(handler=cmd_check)


def cmd_check(ctx: Context) -> int:
    subset = None
    if ctx.args.read_data_subset:
        try:
            # Today's date as the seed: a re-run the same day reads the same sample.
            subset = Subset.parse(ctx.args.read_data_subset, date.today().isoformat())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    repo = ctx.repo()
    bars = []

    def progress(total: int) -> Callable[[int], None] | None:
        bar = ctx.progress_bar(total, "read data")
        if bar is None:
            return None
        bars.append(bar)
        update: Callable[[int], None] = bar.update
        return update

    # A shared lock: gc (exclusive) cannot delete packs under us; snapshots may run.
    with repo.lock(exclusive=False) as lock:
        try:
            report = run_check(
                repo,
                read_data=ctx.args.read_data,
                subset=subset,
                workers=max(2, os.cpu_count() or 2),
                progress=progress,
                own_lock=lock.name,
            )
        finally:
            for bar in bars:
                bar.close()
    _print(ctx, report)
    if not report.ok:
        # The message names snapshots, paths and hold reasons: repository text, escaped here
        # because dedupe.cli.main prints error messages as they are.
        raise DamageError(printable(report.damage_message()))
    return 0


def _print(ctx: Context, report: CheckReport) -> None:
    for text in report.warnings:
        ctx.warn(text)
    if ctx.json:
        ctx.emit_json(report.to_json())
        return
    ctx.out(
        f"checked {report.snapshots} snapshots, {report.index_files} index files, "
        f"{report.packs} packs, {report.blobs_indexed} blobs, {report.trees} trees"
    )
    if report.packs_read:
        ctx.out(
            f"read {report.packs_read} packs ({human_bytes(report.bytes_read)}), verified "
            f"{report.blobs_verified} blobs"
        )
    for text in report.notes:
        ctx.out(text)
    ctx.out("no errors found" if report.ok else f"{len(report.errors)} error(s) found")
