"""Side-by-side benchmark of dedupe, restic and BorgBackup on the same corpus, in the same run.

``python -m benchmarks.run [--size 2G] [--reps 3] [--tools dedupe,restic,borg]
[--out bench-out/results.json] [--workdir DIR] [--small]``

Each repetition runs every tool once, in a rotated order so no tool always goes first (and
always finds the page cache in the same state). Per tool and repetition: a fresh copy of the
night-0 corpus at one fixed path; init; first snapshot; the live tree is brought to night 1 as
rsync would (only changed files are rewritten, so unchanged files keep inode, mtime and ctime
and every tool's files cache stays valid); second snapshot; unchanged rerun; restore into an
empty dir (checked against the source); forget + gc down to the newest snapshot. Caches live
in the tool's workspace and persist across the nights, as a nightly job's would.

All timings are warm-cache: the corpus was just written or copied and stays in RAM (dropping
the page cache needs root and disturbs other work); every tool sees the same conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import blake3

from benchmarks import ceilings
from benchmarks.corpus import DUMP_NAME, generate, parse_size
from benchmarks.report import format_table, medians_and_ratios
from benchmarks.tools import (
    ALL_TOOLS,
    PACKAGES,
    TIME_BIN,
    Measured,
    Tool,
    Workspace,
    dir_usage,
    ensure_installed,
    probe,
    run_measured,
)

STEPS = ("init", "first", "second", "rerun", "restore", "restore_dump", "forget_gc")


def _remove(path: Path) -> None:
    """``rm -rf``: no Python work per file, which matters on trees of ~50k files."""
    subprocess.run(["rm", "-rf", "--", str(path)], check=False)


def _file_digest(path: Path) -> str:
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def sync_tree(src: Path, dst: Path) -> None:
    """Make ``dst`` equal ``src`` touching only files whose size or mtime differ (like rsync)."""
    wanted: set[Path] = set()
    for dirpath, _, names in os.walk(src):
        rel_dir = Path(dirpath).relative_to(src)
        (dst / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in names:
            rel = rel_dir / name
            wanted.add(rel)
            s, d = src / rel, dst / rel
            st = s.stat()
            try:
                dt = d.stat()
                if (dt.st_size, dt.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
                    continue
            except FileNotFoundError:
                pass
            tmp = d.with_name(d.name + ".sync-tmp")
            shutil.copy2(s, tmp)
            tmp.replace(d)
    for dirpath, _, names in os.walk(dst):
        for name in names:
            rel = Path(dirpath, name).relative_to(dst)
            if rel not in wanted:
                (dst / rel).unlink()


def _file_count(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


def _verify_restore(restored_root: Path, source: Path) -> dict[str, Any]:
    """The dump must match byte for byte; file count and total bytes must match too."""
    inner = restored_root / str(source).lstrip("/")
    dump = inner / DUMP_NAME
    result: dict[str, Any] = {
        "dump_equal": dump.exists() and _file_digest(dump) == _file_digest(source / DUMP_NAME)
    }
    result["files_equal"] = _file_count(inner) == _file_count(source)
    result["bytes_equal"] = dir_usage(inner)[1] == dir_usage(source)[1]
    result["ok"] = all(result.values())
    return result


def _step(tool: Tool, ws: Workspace, cmds: list[list[str]], cwd: Path | None = None) -> Measured:
    total = Measured()
    for argv in cmds:
        total.add(run_measured(argv, tool.env(ws), cwd=cwd))
        if total.rc:
            break
    return total


def run_one(tool: Tool, ws: Workspace, pristine: dict[int, Path], live: Path) -> dict[str, Any]:
    """One repetition of every step for one tool; stops at the first failing step."""
    _remove(live)
    subprocess.run(["cp", "-a", str(pristine[0]), str(live)], check=True)
    record: dict[str, Any] = {"tool": tool.name, "steps": {}}
    plan: list[tuple[str, list[list[str]], Path | None]] = [
        ("init", tool.init(ws), None),
        ("first", tool.snapshot(ws, live, "night0"), None),
        ("second", tool.snapshot(ws, live, "night1"), None),
        ("rerun", tool.snapshot(ws, live, "rerun"), None),
        ("restore", tool.restore(ws, "rerun"), ws.restore),
        # The practice's recovery time is its database dump: restored alone, into an empty dir.
        ("restore_dump", tool.restore_file(ws, "rerun", live / DUMP_NAME), ws.restore),
        ("forget_gc", tool.forget_gc(ws), None),
    ]
    for step, cmds, cwd in plan:
        if step == "second":
            sync_tree(pristine[1], live)
        m = _step(tool, ws, cmds, cwd)
        used, apparent = dir_usage(ws.repo)
        rec = {
            "wall_s": round(m.wall_s, 4),
            "max_rss_kib": m.max_rss_kib,
            "rc": m.rc,
            "repo_bytes": used,
            "repo_apparent_bytes": apparent,
        }
        if tool.name == "dedupe" and m.stdout.strip().startswith("{"):
            try:
                rec["json"] = json.loads(m.stdout)
            except json.JSONDecodeError:
                pass
        record["steps"][step] = rec
        if m.rc != 0:
            record["error"] = f"{step} exited {m.rc}: {m.stderr_tail}"
            break
        if step == "restore":
            record["restore_check"] = _verify_restore(ws.restore, live)
            _remove(ws.restore)  # the restored copy is not needed for gc; free the disk
            ws.restore.mkdir()
        if step == "restore_dump":
            dump = ws.restore / str(live / DUMP_NAME).lstrip("/")
            same = dump.exists() and _file_digest(dump) == _file_digest(live / DUMP_NAME)
            record["restore_check"]["dump_alone_equal"] = same
            record["restore_check"]["ok"] = record["restore_check"]["ok"] and same
            record["dump_bytes"] = (live / DUMP_NAME).stat().st_size
            _remove(ws.restore)
    return record


def _prepare_corpus(workdir: Path, size: int) -> dict[int, Path]:
    """Night 0 and night 1 pristine trees (night 1 = copy of night 0, mutated)."""
    base = workdir / "corpus"
    n0, n1 = base / "night0", base / "night1"
    if (
        not (n0 / ".corpus-state.json").exists()
        or json.loads((n0 / ".corpus-state.json").read_text())["size"] != size
    ):
        shutil.rmtree(base, ignore_errors=True)
        started = time.perf_counter()
        generate(n0, size, 0)
        print(f"corpus night 0 generated in {time.perf_counter() - started:.1f} s", flush=True)
    if (
        not (n1 / ".corpus-state.json").exists()
        or json.loads((n1 / ".corpus-state.json").read_text())["night"] != 1
    ):
        shutil.rmtree(n1, ignore_errors=True)
        subprocess.run(["cp", "-a", str(n0), str(n1)], check=True)
        generate(n1, size, 1)
    return {0: n0, 1: n1}


def _environment(tools: list[Tool]) -> dict[str, Any]:
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "",
        )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
        "versions": {t.name: t.version() for t in tools},
    }


def _write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --small is the CI preset."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--size", default=None, help="corpus size (default 2G; 240M with --small)")
    ap.add_argument(
        "--reps", type=int, default=None, help="repetitions (default 3; 1 with --small)"
    )
    ap.add_argument("--tools", default="dedupe,restic,borg")
    ap.add_argument("--out", type=Path, default=Path("bench-out/results.json"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dedupe-bench"))
    ap.add_argument("--small", action="store_true", help="CI preset: ~240 MB corpus, 1 rep")
    ap.add_argument("--keep-corpus", action="store_true", help="keep the generated corpus")
    ap.add_argument("--no-ceilings", action="store_true", help="skip component ceilings")
    ap.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any tool step fails or a restore does not match",
    )
    args = ap.parse_args(argv)
    args.size = parse_size(args.size or ("240M" if args.small else "2G"))
    args.reps = args.reps or (1 if args.small else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; skipped peers are notes, failures count only with --strict."""
    args = parse_args(argv)
    notes: list[str] = ["warm page cache for all tools (corpus just written/copied)"]
    skipped: dict[str, str] = {}
    tools: list[Tool] = []
    args.workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.workdir).free
    if free < args.size * 6:
        print(
            f"warning: {free / 1e9:.1f} GB free in {args.workdir}; ~{args.size * 6 / 1e9:.1f} "
            "GB needed",
            file=sys.stderr,
        )
    if not ensure_installed(TIME_BIN, "time", notes):
        notes.append("peak RSS from a getrusage wrapper instead of GNU time")
    for name in [t.strip() for t in args.tools.split(",") if t.strip()]:
        if name not in ALL_TOOLS:
            raise SystemExit(f"unknown tool {name!r}; choose from {', '.join(ALL_TOOLS)}")
        if name in PACKAGES and not ensure_installed(*PACKAGES[name], notes):
            skipped[name] = f"{PACKAGES[name][1]} not installed"
            continue
        tool = ALL_TOOLS[name]()
        reason = probe(tool, args.workdir)
        if reason:
            skipped[name] = reason
            continue
        tools.append(tool)
    for name, reason in skipped.items():
        print(f"SKIPPED {name}: {reason}", flush=True)

    pristine = _prepare_corpus(args.workdir, args.size)
    corpus_bytes = dir_usage(pristine[0])[1]
    result: dict[str, Any] = {
        "config": {
            "size": args.size,
            "reps": args.reps,
            "corpus_bytes": corpus_bytes,
            "tools": [t.name for t in tools],
        },
        "environment": _environment(tools),
        "notes": notes,
        "skipped": skipped,
        "runs": [],
    }
    if not args.no_ceilings:
        print("measuring component ceilings ...", flush=True)
        result["ceilings"] = ceilings.measure(pristine[0], 16 if args.small else 64)
        print(ceilings.format_report(result["ceilings"]), flush=True)

    live = args.workdir / "live" / "practice-server"
    live.parent.mkdir(parents=True, exist_ok=True)
    for rep in range(args.reps):
        order = tools[rep % max(1, len(tools)) :] + tools[: rep % max(1, len(tools))]
        for tool in order:
            ws_root = args.workdir / "runs" / f"{tool.name}-rep{rep}"
            _remove(ws_root)
            print(f"rep {rep + 1}/{args.reps}: {tool.name} ...", flush=True)
            load = os.getloadavg()
            rec = run_one(tool, Workspace(ws_root), pristine, live)
            rec["rep"], rec["loadavg_start"] = rep, load
            result["runs"].append(rec)
            brief = ", ".join(f"{s} {v['wall_s']:.2f}s" for s, v in rec["steps"].items())
            print(
                f"  {brief}" + (f"\n  ERROR {rec['error']}" if "error" in rec else ""), flush=True
            )
            _remove(ws_root)
            _write_json(args.out, result)  # partial results survive an interrupted run
    _remove(live.parent)
    if not args.keep_corpus:
        _remove(args.workdir / "corpus")

    result["environment"]["loadavg_end"] = os.getloadavg()
    env = result["environment"]
    busiest = max(
        [env["loadavg_start"][0], env["loadavg_end"][0]]
        + [r["loadavg_start"][0] for r in result["runs"]]
    )
    if busiest > 0.5 * (os.cpu_count() or 1):
        notes.append(
            f"machine busy (1-min load average up to {busiest:.1f} on {os.cpu_count()} "
            "CPUs): absolute numbers are unreliable, ratios less so"
        )
    result["medians"], result["ratios"] = medians_and_ratios(result, STEPS)
    print(format_table(result), flush=True)
    _write_json(args.out, result)
    print(f"raw results: {args.out}")
    failed = [
        r for r in result["runs"] if "error" in r or not r.get("restore_check", {}).get("ok", True)
    ]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
