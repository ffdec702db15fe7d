"""`dedupe repair index`: rebuild the index from the pack headers (`dedupe.repo.repair`)."""

from __future__ import annotations

import argparse

from dedupe.cli.context import Context, Subparsers
from dedupe.errors import DamageError
from dedupe.repo import repair


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "repair",
        parents=[common],
        help="rebuild what can be rebuilt (the index, from the packs)",
        description="Rebuild parts of the repository that can be rebuilt from other parts.",
        epilog="example:\n"
        "  dedupe repair index --dry-run   after 'dedupe check' reported a damaged index\n"
        "  dedupe repair index\n",
    )
    what = p.add_subparsers(dest="repair_what", metavar="WHAT")
    what.required = True
    q = what.add_parser(
        "index",
        parents=[common],
        help="rebuild the index from the packs' own headers",
        description=(
            "Write a new index from the header every pack carries, then remove the old index "
            "files (damaged, lost or put back from an old copy). Needs the repository to "
            "itself (no backup may run). Safe to interrupt: run it again. Works on a full "
            "disk as far as the space reserve allows."
        ),
        epilog="example:\n  dedupe repair index --dry-run && dedupe repair index\n",
    )
    q.add_argument("--dry-run", action="store_true", help="show what would be done, change nothing")
    q.set_defaults(handler=cmd_repair_index)


def cmd_repair_index(ctx: Context) -> int:
    repo = ctx.repo()
    bar = None

    def progress(_phase: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = ctx.progress_bar(total, "read pack headers", " packs")
        if bar is not None:
            bar.n = done
            bar.refresh()

    try:
        result = repair.run(repo, ctx.args.dry_run, progress)
    finally:
        if bar is not None:
            bar.close()
    if ctx.json:
        ctx.emit_json(
            {
                "dry_run": result.dry_run,
                "packs": result.packs,
                "blobs": result.blobs,
                "index_files_written": result.index_files_written,
                "index_files_removed": result.index_files_removed,
                "unreadable_packs": result.unreadable_packs,
                "kept_from_index": result.kept_from_index,
                "damaged_index_files": result.damaged_index_files,
            }
        )
    else:
        _print_summary(ctx, result)
    if result.unreadable_packs:
        raise DamageError(
            f"{len(result.unreadable_packs)} pack(s) have a header that cannot be read: they "
            "were left in place (not deleted), and the rest of the index was rebuilt. "
            + _unreadable_detail(result)
            + " Run 'dedupe check --read-data' to see which snapshots need them."
        )
    return 0


def _unreadable_detail(r: repair.RepairResult) -> str:
    lost = len(r.unreadable_packs) - len(r.kept_from_index)
    parts = []
    if r.kept_from_index:
        parts.append(
            f"{len(r.kept_from_index)} of them kept the entries the old index gave for them"
        )
    if lost:
        parts.append(f"the blobs of {lost} are left out of the index")
    names = ", ".join(p[:16] for p in r.unreadable_packs[:10])
    more = "" if len(r.unreadable_packs) <= 10 else f" and {len(r.unreadable_packs) - 10} more"
    return "; ".join(parts).capitalize() + f" (packs {names}{more})."


def _print_summary(ctx: Context, r: repair.RepairResult) -> None:
    if r.dry_run:
        ctx.out(
            f"would rebuild the index from {r.packs} packs ({r.blobs} blobs): "
            f"{r.index_files_written} new index file(s), {r.index_files_removed} old one(s) "
            "removed"
        )
    else:
        ctx.done(
            f"rebuilt the index from {r.packs} packs ({r.blobs} blobs): wrote "
            f"{r.index_files_written} index file(s), removed {r.index_files_removed} old one(s)"
        )
    if r.damaged_index_files:
        names = ", ".join(n[:16] for n in r.damaged_index_files)
        verb = "would be" if r.dry_run else "were"
        ctx.out(f"damaged index files that {verb} replaced: {names}")
    if r.reserve_spent:
        ctx.out("the disk was full: the space reserve was used ('dedupe gc' writes it back)")
    if r.dry_run:
        ctx.out("dry run: nothing was changed")
