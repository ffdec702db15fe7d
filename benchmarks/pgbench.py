"""Nightly `pg_dump` backups of a real PostgreSQL database: dedupe vs restic vs BorgBackup.

``python -m benchmarks.pgbench [--scale 20] [--nights 4] [--transactions 2000]
[--tools dedupe,restic,borg] [--baseline [NAME=]DIR] [--sweep 4,8,16,64] [--workdir W] [--out F]``

A private PostgreSQL server (`benchmarks.pgserver`: a temporary data folder, a unix socket in a
private folder, no TCP) gets pgbench's tables at `--scale` (100,000 accounts per unit), with the
accounts' blank `filler` replaced by 84 characters of md5 text, so the dump has realistic,
compressible row content (scale 20: a ~195 MB dump that zstd-3 shrinks about 3x). Night 0 backs up
the first dump; before every later night pgbench runs `--transactions` TPC-B-like transactions
(each updates one random account, teller and branch and appends a history row), so the dump
changes where PostgreSQL put the new row versions: scattered rows vanish from their old place and
reappear at the end or in freed space, as in a real database.

Each night every tool backs up the output of `pg_dump` piped to it, in an order rotated per
night: dedupe `snapshot --stdin-from-command -- pg_dump ...`, restic `backup --stdin`, Borg
`create ... -`, all encrypted with zstd-3 (the settings of `benchmarks.tools`). The growth of each
repository (apparent bytes) is what a night costs on the backup drive; the table prints it per
night with the ratio dedupe/restic (the issue's target: <= 0.25x). `--baseline DIR` adds a
dedupe run from another checkout (e.g. `git archive <commit> | tar -x -C DIR`), to show a change
against the code before it. After the last night dedupe's snapshot is restored and
compared with a dump taken beside the backups, byte for byte.

`--sweep` re-cuts the dumps in-process with FastCDC at the given averages (KiB; min avg/4, max
4x avg, as dedupe's chunker) and prints what each night's new chunks would store after zstd-3 plus
per-blob overhead (the seal's 40 bytes and ~44 bytes of index entry), and the index bytes per GB
of dump: the trade-off behind the stream chunk size (docs/FORMAT-chunking.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import blake3

from benchmarks.pgserver import PgServer
from benchmarks.tools import (
    PACKAGES,
    TIME_BIN,
    Borg,
    Dedupe,
    Restic,
    Tool,
    Workspace,
    dir_usage,
    ensure_installed,
    run_measured,
)

STREAM_NAME = "bench.sql"
FILLER_SQL = "md5(aid::text) || md5('x' || aid) || left(md5('y' || aid), 20)"  # 84 chars
SEAL_OVERHEAD = 40  # nonce 24 + MAC 16 per stored blob (docs/FORMAT.md)
INDEX_ENTRY = 44  # bytes of index file per blob (benchmarks/index_scale.py)


class DedupeAt(Dedupe):
    """dedupe run from another checkout (`--baseline`), named `dedupe@base`."""

    def __init__(self, source_root: Path, name: str = "dedupe@base") -> None:
        super().__init__()
        self.source_root = str(source_root.resolve())
        self.name = name


def stream_backup(tool: Tool, ws: Workspace, dump: list[str], label: str) -> list[str]:
    """The argv that backs up the output of `dump` as the stream `bench.sql`."""
    if isinstance(tool, Dedupe):
        return [
            *tool.cmd,
            "snapshot",
            "--stdin-name",
            STREAM_NAME,
            "--tag",
            label,
            "--json",
            "--stdin-from-command",
            "--",
            *dump,
        ]
    if isinstance(tool, Restic):
        backup = [
            *tool._base(ws),
            "backup",
            "--stdin",
            "--stdin-filename",
            STREAM_NAME,
            "--host",
            "bench",
            "--tag",
            label,
        ]
    elif isinstance(tool, Borg):
        backup = [
            "borg",
            "create",
            "--compression",
            "zstd,3",
            "--stdin-name",
            STREAM_NAME,
            f"{ws.repo}::{label}",
            "-",
        ]
    else:
        raise ValueError(f"no stream backup for {tool.name}")
    return ["bash", "-o", "pipefail", "-c", f"{shlex.join(dump)} | {shlex.join(backup)}"]


def prepare_database(pg: PgServer, scale: int) -> None:
    """pgbench's tables at `scale`, generated server-side as `pgbench -i -I dtGvp` does, but
    with md5 text in the accounts' filler instead of blanks."""
    pg.psql("CREATE DATABASE bench", "postgres")
    pg.pgbench("-i", "-I", "dt", "-s", str(scale), "-q")
    pg.psql(
        f"INSERT INTO pgbench_branches(bid, bbalance) SELECT bid, 0 "
        f"FROM generate_series(1, {scale}) AS bid"
    )
    pg.psql(
        f"INSERT INTO pgbench_tellers(tid, bid, tbalance) SELECT tid, (tid - 1) / 10 + 1, 0 "
        f"FROM generate_series(1, {scale * 10}) AS tid"
    )
    pg.psql(
        "INSERT INTO pgbench_accounts(aid, bid, abalance, filler) "
        f"SELECT aid, (aid - 1) / 100000 + 1, 0, {FILLER_SQL} "
        f"FROM generate_series(1, {scale * 100000}) AS aid"
    )
    pg.pgbench("-i", "-I", "vp", "-s", str(scale), "-q")


def dump_to(pg: PgServer, path: Path) -> tuple[int, str, float]:
    """(size, BLAKE3 hex, seconds) of a dump written to `path`."""
    started = time.perf_counter()
    with open(path, "wb") as out:
        subprocess.run(pg.dump_argv(), stdout=out, check=True)
    seconds = time.perf_counter() - started
    return path.stat().st_size, file_digest(path), seconds


def file_digest(path: Path) -> str:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def repo_parts(repo: Path) -> dict[str, int]:
    """Apparent bytes of a dedupe repository's data, index and everything else."""
    parts = {"data": 0, "index": 0, "other": 0}
    for dirpath, _, names in os.walk(repo):
        top = Path(dirpath).relative_to(repo).parts[:1]
        key = top[0] if top and top[0] in parts else "other"
        for name in names:
            parts[key] += os.lstat(os.path.join(dirpath, name)).st_size
    return parts


# --- the simulation of other chunk sizes ------------------------------------------------------


def sweep(dumps: list[Path], averages_kib: list[int]) -> list[dict[str, Any]]:
    """What each night's new chunks would store at each average chunk size (see module doc)."""
    import zstandard

    from dedupe.chunker import Chunker, ChunkerParams

    compressor = zstandard.ZstdCompressor(level=3)
    rows = []
    for avg in averages_kib:
        chunker = Chunker(ChunkerParams.for_average(avg * 1024), seed=0)
        seen: set[bytes] = set()
        nights = []
        for path in dumps:
            new_bytes = blobs = new_blobs = 0
            with open(path, "rb", buffering=0) as f:
                for chunk in chunker.chunks(f.readinto):
                    blobs += 1
                    digest = blake3.blake3(chunk).digest()
                    if digest in seen:
                        continue
                    seen.add(digest)
                    new_blobs += 1
                    new_bytes += len(compressor.compress(chunk)) + SEAL_OVERHEAD + INDEX_ENTRY
            nights.append({"new_bytes": new_bytes, "blobs": blobs, "new_blobs": new_blobs})
        size = dumps[0].stat().st_size
        rows.append(
            {
                "avg_kib": avg,
                "nights": nights,
                "index_bytes_per_gb": round(nights[0]["blobs"] * INDEX_ENTRY * 1e9 / size),
            }
        )
    return rows


# --- the run ----------------------------------------------------------------------------------


def home(tool: Tool) -> Path | None:
    """The folder a dedupe command runs in: its checkout (`python -m` puts the working folder
    first on the module path, so a baseline run from elsewhere would load the wrong code)."""
    return Path(tool.source_root) if isinstance(tool, Dedupe) else None


def night_step(tool: Tool, ws: Workspace, pg: PgServer, label: str) -> dict[str, Any]:
    before = dir_usage(ws.repo)[1]
    m = run_measured(stream_backup(tool, ws, pg.dump_argv(), label), tool.env(ws), home(tool))
    after = dir_usage(ws.repo)[1]
    rec: dict[str, Any] = {
        "wall_s": round(m.wall_s, 3),
        "max_rss_kib": m.max_rss_kib,
        "rc": m.rc,
        "added_bytes": after - before,
        "repo_bytes": after,
    }
    if m.rc != 0:
        rec["error"] = m.stderr_tail
    if isinstance(tool, Dedupe):
        rec["parts"] = repo_parts(ws.repo)
        try:
            rec["json"] = json.loads(m.stdout)
        except json.JSONDecodeError:
            pass
    return rec


def check_restore(tool: Dedupe, ws: Workspace, expected: str) -> tuple[bool, float]:
    """Restore the latest snapshot; (the stream equals the reference dump, seconds)."""
    target = ws.root / "restore"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    argv = [*tool.cmd, "restore", "latest", "--target", str(target)]
    m = run_measured(argv, tool.env(ws), home(tool))
    restored = target / STREAM_NAME
    ok = m.rc == 0 and restored.exists() and file_digest(restored) == expected
    shutil.rmtree(target, ignore_errors=True)
    return ok, m.wall_s


def run(args: argparse.Namespace) -> dict[str, Any]:
    notes: list[str] = []
    ensure_installed(TIME_BIN, "time", notes)
    ensure_installed("/usr/lib/postgresql", "postgresql", notes)
    tools: list[Tool] = []
    for name in [t.strip() for t in args.tools.split(",") if t.strip()]:
        if name in PACKAGES and not ensure_installed(*PACKAGES[name], notes):
            notes.append(f"{name} skipped: not installed")
            continue
        tools.append({"dedupe": Dedupe, "restic": Restic, "borg": Borg}[name]())
    for spec in args.baseline:
        name, _, folder = spec.rpartition("=")
        tools.append(DedupeAt(Path(folder), name or "dedupe@base"))
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spaces = {t.name: Workspace(work / "runs" / t.name) for t in tools}
    dumps_dir = work / "dumps"
    dumps_dir.mkdir()
    result: dict[str, Any] = {
        "config": {
            "scale": args.scale,
            "nights": args.nights,
            "transactions": args.transactions,
            "tools": [t.name for t in tools],
        },
        "loadavg_start": os.getloadavg(),
        "notes": notes,
        "nights": [],
    }
    for tool in tools:
        ws = spaces[tool.name]
        m = run_measured(tool.init(ws)[0], tool.env(ws), home(tool))
        if m.rc != 0:
            raise SystemExit(f"{tool.name} init failed: {m.stderr_tail}")
    with PgServer(work / "pg") as pg:
        started = time.perf_counter()
        prepare_database(pg, args.scale)
        seconds = time.perf_counter() - started
        print(f"database at scale {args.scale} in {seconds:.1f} s", flush=True)
        dump_files: list[Path] = []
        for night in range(args.nights):
            if night:
                pg.pgbench("-n", "-c", "1", "-t", str(args.transactions), f"--random-seed={night}")
                pg.psql("CHECKPOINT")
            path = dumps_dir / f"night{night}.sql"
            size, digest, dump_s = dump_to(pg, path)
            dump_files.append(path)
            if not args.sweep and night >= 1:
                dump_files[night - 1].unlink()
            rec: dict[str, Any] = {
                "night": night,
                "dump_bytes": size,
                "dump_s": round(dump_s, 2),
                "digest": digest,
                "loadavg": os.getloadavg(),
                "tools": {},
            }
            order = tools[night % len(tools) :] + tools[: night % len(tools)]
            for tool in order:
                rec["tools"][tool.name] = night_step(tool, spaces[tool.name], pg, f"night{night}")
            result["nights"].append(rec)
            print(night_line(rec, tools), flush=True)
            write_json(args.out, result)
        last = result["nights"][-1]
        for tool in tools:
            if isinstance(tool, Dedupe):
                ok, seconds = check_restore(tool, spaces[tool.name], last["digest"])
                last["tools"][tool.name]["restore_ok"] = ok
                last["tools"][tool.name]["restore_s"] = round(seconds, 2)
        if args.sweep:
            result["sweep"] = sweep(dump_files, args.sweep)
    result["loadavg_end"] = os.getloadavg()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def night_line(rec: dict[str, Any], tools: list[Tool]) -> str:
    parts = [f"night {rec['night']}: dump {rec['dump_bytes'] / 1e6:.1f} MB"]
    for tool in tools:
        t = rec["tools"][tool.name]
        parts.append(f"{tool.name} +{t['added_bytes'] / 1e6:.2f} MB in {t['wall_s']:.1f} s")
    return ", ".join(parts)


def format_report(result: dict[str, Any]) -> str:
    tools = result["config"]["tools"]
    lines = [
        f"pgbench scale {result['config']['scale']}, {result['config']['transactions']} "
        f"transactions per night, {result['config']['nights']} nights "
        f"(load {result['loadavg_start'][0]:.1f} -> {result['loadavg_end'][0]:.1f})",
        "",
        "| night | dump MB | "
        + " | ".join(f"{t} MB added" for t in tools)
        + " | "
        + " | ".join(f"{t} s" for t in tools)
        + (" | dedupe / restic |" if "dedupe" in tools and "restic" in tools else " |"),
        "| --- " * (2 + 2 * len(tools) + ("dedupe" in tools and "restic" in tools)) + "|",
    ]
    for rec in result["nights"]:
        added = [rec["tools"][t]["added_bytes"] / 1e6 for t in tools]
        walls = [rec["tools"][t]["wall_s"] for t in tools]
        row = (
            f"| {rec['night']} | {rec['dump_bytes'] / 1e6:.1f} | "
            + " | ".join(f"{a:.2f}" for a in added)
            + " | "
            + " | ".join(f"{w:.1f}" for w in walls)
        )
        if "dedupe" in tools and "restic" in tools:
            row += f" | {ratio(rec, 'dedupe', 'restic'):.3f}"
        lines.append(row + " |")
    later = result["nights"][1:]
    if later and "dedupe" in tools and "restic" in tools:
        ratios = [ratio(rec, "dedupe", "restic") for rec in later]
        worst = max(ratios)
        lines.append("")
        lines.append(
            f"nightly growth dedupe/restic: median {statistics.median(ratios):.3f}, worst "
            f"{worst:.3f} (target <= 0.25: {'ok' if worst <= 0.25 else 'MISS'})"
        )
    for name in tools:
        last = result["nights"][-1]["tools"][name]
        if "parts" in last:
            parts = last["parts"]
            per_gb = parts["index"] * 1e9 / max(1, parts["data"])
            lines.append(
                f"{name}: data {parts['data'] / 1e6:.1f} MB, index {parts['index'] / 1e6:.2f} MB "
                f"= {per_gb / 1e6:.2f} MB of index per GB stored; restore of the last night "
                f"{'matches the dump' if last.get('restore_ok') else 'DOES NOT MATCH'} "
                f"({last.get('restore_s', 0):.1f} s)"
            )
    if "sweep" in result:
        lines += ["", "FastCDC re-cut of the same dumps (new chunks, zstd-3 + 84 B per blob):"]
        lines.append("| avg KiB | night 0 MB | later nights MB | index per GB of dump |")
        lines.append("| --- | --- | --- | --- |")
        for row in result["sweep"]:
            later_mb = ", ".join(f"{n['new_bytes'] / 1e6:.2f}" for n in row["nights"][1:])
            lines.append(
                f"| {row['avg_kib']} | {row['nights'][0]['new_bytes'] / 1e6:.1f} | {later_mb} "
                f"| {row['index_bytes_per_gb'] / 1e6:.2f} MB |"
            )
    return "\n".join(lines)


def ratio(rec: dict[str, Any], a: str, b: str) -> float:
    return rec["tools"][a]["added_bytes"] / max(1, rec["tools"][b]["added_bytes"])


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.pgbench", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--scale", type=int, default=20, help="pgbench scale (default 20)")
    ap.add_argument("--nights", type=int, default=4, help="nights, the first included")
    ap.add_argument("--transactions", type=int, default=2000, help="pgbench transactions a night")
    ap.add_argument("--tools", default="dedupe,restic,borg")
    ap.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="also run dedupe from the checkout DIR, named NAME (default dedupe@base); repeatable",
    )
    ap.add_argument(
        "--sweep",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=None,
        help="re-cut the dumps at these FastCDC averages in KiB, e.g. 4,8,16,64",
    )
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dedupe-pgbench")
    ap.add_argument("--out", type=Path, default=None, help="write the raw results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (repositories, dumps)")
    args = ap.parse_args(argv)
    if args.nights < 1 or args.scale < 1 or args.transactions < 0:
        ap.error("--nights and --scale must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM unwinds like an exception, so the private server is stopped and its folder
    # deleted (`PgServer.__exit__`) instead of being left running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    result = run(args)
    write_json(args.out, result)
    print(format_report(result), flush=True)
    failed = [
        name
        for name, rec in result["nights"][-1]["tools"].items()
        if rec["rc"] != 0 or rec.get("restore_ok") is False
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
