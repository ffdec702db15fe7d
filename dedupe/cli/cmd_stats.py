"""`dedupe stats`: repository size, logical size, ratios and per-snapshot unique/added bytes.

The numbers come from `dedupe.stats` (index and trees only, no data read). No lock is taken:
like `snapshots`, this only reads, and a gc running at the same time makes it fail with a clear
damage message about a missing tree rather than print wrong numbers.
"""

from __future__ import annotations

import argparse
from typing import Any

from dedupe import stats
from dedupe.cli.chartfile import chart_target, write_chart
from dedupe.cli.context import Context, Subparsers, human_bytes
from dedupe.errors import DamageError, DedupeError


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "stats",
        parents=[common],
        help="repository size, deduplication and compression, per-snapshot unique bytes",
        description="Sizes from the index and the snapshot trees (no data is read): what the "
        "backend stores, what the snapshots hold, and for each snapshot what it added when it "
        "was made and what forgetting it alone would free (its unique bytes).",
        epilog="examples:\n"
        "  dedupe stats                 how big the repository is and what each backup costs\n"
        "  dedupe stats --json          the same for a script\n"
        "  dedupe stats --chart n.png   a bar a night: what each backup added, unusual nights "
        "in red\n",
    )
    p.add_argument(
        "--chart",
        metavar="FILE",
        help="draw what each backup added, one bar a backup, unusually large nights (a "
        "ransomware re-encryption, a scanner dumping its archive) in red and labelled: a "
        "picture (FILE.png) or a web page's drawing (FILE.svg)",
    )
    p.set_defaults(handler=cmd_stats)


def stats_json(result: stats.RepoStats, unusual: stats.Unusual | None = None) -> dict[str, Any]:
    """The contract's `stats` object (`stored_bytes`, `logical_bytes`, `snapshots`, `chunks`)
    plus ratios and the per-snapshot array (`unusual`: it added far more than its group's
    nights usually do, `stats.unusual_nights`)."""
    unusual = stats.unusual_nights(result.usage) if unusual is None else unusual
    return {
        "stored_bytes": result.stored_bytes,
        "logical_bytes": result.logical_bytes,
        "snapshots": len(result.usage),
        "chunks": result.chunks,
        "reserve_bytes": result.reserve_bytes,
        "pack_bytes": result.pack_bytes,
        "raw_bytes": result.referenced_raw_bytes,
        "unreferenced_bytes": result.unreferenced_bytes,
        "dedup_ratio": round(result.dedup_ratio, 4),
        "compression_ratio": round(result.compression_ratio, 4),
        "total_ratio": round(result.total_ratio, 4),
        "per_snapshot": [
            {
                "id": u.snapshot.id,
                "time": u.snapshot.time.isoformat(),
                "host": u.snapshot.host,
                "paths": u.snapshot.display_paths(),
                "logical_bytes": u.logical_bytes,
                "added_bytes": u.added_bytes,
                "added_source": u.added_source,
                "unique_bytes": u.unique_bytes,
                "unusual": flag,
            }
            for u, flag in zip(result.usage, unusual.flags, strict=True)
        ],
    }


def cmd_stats(ctx: Context) -> int:
    chart_fmt = chart_target(ctx.args.chart) if ctx.args.chart else None
    repo = ctx.repo()
    damaged: list[str] = []
    result = stats.collect(repo, damaged)
    unusual = stats.unusual_nights(result.usage)
    if chart_fmt is not None:
        _write_chart(ctx.args.chart, chart_fmt, result, unusual)
    if ctx.json:
        ctx.emit_json(stats_json(result, unusual))
    else:
        _print(ctx, result, unusual)
    for text in damaged:
        ctx.warn(text)
    if damaged:
        raise DamageError(f"{len(damaged)} snapshot manifest(s) are damaged; run 'dedupe check'")
    return 0


def _write_chart(path: str, fmt: str, result: stats.RepoStats, unusual: stats.Unusual) -> None:
    from dedupe.plan import chart

    if not result.usage:
        raise DedupeError("the repository has no snapshots yet: there is nothing to draw")
    bounds = {b for b in unusual.bounds if b is not None}
    flagged = sum(unusual.flags)
    if not bounds:
        note = "Too few backups yet to tell an unusual night from a usual one."
    elif flagged:
        note = (
            f"{flagged} unusually large night(s) in red: far more than these backups usually "
            "add (ransomware encrypting files, an archive dumped in?); look at what changed."
        )
    else:
        note = "No unusually large night: every backup added about what they usually add."
    picture = chart.nightly_bars(
        [
            (u.snapshot.time, u.added_bytes, flag)
            for u, flag in zip(result.usage, unusual.flags, strict=True)
        ],
        f"What each backup added, {len(result.usage)} backups",
        fmt,
        threshold=bounds.pop() if len(bounds) == 1 else None,
        subtitle=note,
    )
    write_chart(path, picture)


def _print(ctx: Context, result: stats.RepoStats, unusual: stats.Unusual) -> None:
    ctx.out(
        f"stored:      {human_bytes(result.stored_bytes)} ({result.stored_bytes} bytes; "
        f"packs {human_bytes(result.pack_bytes)}, space reserve "
        f"{human_bytes(result.reserve_bytes)} not counted)"
    )
    ctx.out(f"logical:     {human_bytes(result.logical_bytes)} in {len(result.usage)} snapshots")
    ctx.out(
        f"ratios:      deduplication {result.dedup_ratio:.2f}x, compression "
        f"{result.compression_ratio:.2f}x, together {result.total_ratio:.2f}x"
    )
    ctx.out(f"chunks:      {result.chunks} (file chunks and trees)")
    ctx.out(f"unreferenced: {human_bytes(result.unreferenced_bytes)} (what gc can free now)")
    if not result.usage:
        return
    ctx.out("")
    ctx.out(f"{'ID':<8}  {'TIME':<25}  {'LOGICAL':>10}  {'ADDED':>10}  {'UNIQUE':>10}  PATHS")
    for u, flag in zip(result.usage, unusual.flags, strict=True):
        marker = ("" if u.added_source == "manifest" else "*") + ("!" if flag else "")
        ctx.out(
            f"{u.snapshot.short_id():<8}  {u.snapshot.time.isoformat(timespec='seconds'):<25}  "
            f"{human_bytes(u.logical_bytes):>10}  {human_bytes(u.added_bytes) + marker:>10}  "
            f"{human_bytes(u.unique_bytes):>10}  {' '.join(u.snapshot.display_paths())}"
        )
    if any(u.added_source != "manifest" for u in result.usage):
        ctx.out("* added bytes derived from the index (the manifest predates the record)")
    if any(unusual.flags):
        ctx.out(
            "! an unusually large night: far more than this folder's nights usually add (a "
            "mass change such as ransomware encrypting files, or an archive dumped in); look "
            "at what changed that night"
        )
    ctx.out("unique: what forgetting that snapshot alone frees after 'gc --max-unused 0'")
