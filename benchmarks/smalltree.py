"""Nightly backups of a source tree of thousands of small files: dedupe vs restic vs BorgBackup.

``python -m benchmarks.smalltree [--source DIR] [--nights 4] [--changes 300] [--touch-all]
[--releases DIR,DIR,...] [--tools dedupe,restic,borg] [--baseline [NAME=]DIR] [--workdir W]
[--out F]``

The tree is a copy of `--source` (default: this Python's standard library without `__pycache__`
and `site-packages`: a real source tree of thousands of small text files). Before every night
after the first, `--changes` text files picked at random (seeded by the night) get a line
inserted at a random place, as a day's edits would; 1 in 30 of that number of files is added
and as many deleted; with `--touch-all` every file also gets a new mtime (a new release
unpacked over the old one, as the issue's Django sdists were). With `--releases`, night N backs
up the N-th folder instead (each replaces the live tree, mtimes kept: successive releases
unpacked as they were, e.g. five Django 4.2.x sdists). Every tool backs up the same live
tree each night (order rotated), and the growth of its repository (apparent bytes) is printed
per night with the ratio dedupe/Borg (the issue's target: <= 1).

For dedupe it then says where the night's bytes went: the blobs the newest snapshot references
that the one before did not, split into file content and trees, each with its stored (sealed,
compressed) size as the index records it; what remains of the growth is pack headers, index files
and the manifest.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.pgbench import DedupeAt, home, write_json
from benchmarks.tools import (
    PACKAGES,
    PASSWORD,
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

TEXT_SUFFIXES = {
    ".py", ".pyi", ".txt", ".rst", ".md", ".c", ".h", ".cfg", ".ini", ".toml", ".json", ".yml",
    ".yaml", ".html", ".js", ".css", ".po",
}  # fmt: skip


def copy_source(source: Path, live: Path) -> int:
    """Copy the tree without caches and site-packages; the number of files copied."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in ("__pycache__", "site-packages") or n.endswith(".pyc")}

    shutil.copytree(source, live, symlinks=True, ignore=ignore)
    return sum(len(files) for _, _, files in os.walk(live))


def text_files(live: Path) -> list[Path]:
    found = []
    for folder, _, names in os.walk(live):
        for name in sorted(names):
            path = Path(folder, name)
            if path.suffix in TEXT_SUFFIXES and not path.is_symlink():
                found.append(path)
    return sorted(found)


def mutate(live: Path, night: int, changes: int, touch_all: bool) -> dict[str, int]:
    """A day's edits: `changes` files get a line inserted, a few files come and go; with
    `touch_all`, every file gets a new mtime too (a new release unpacked over the old one)."""
    rng = random.Random(night)
    files = text_files(live)
    edited = rng.sample(files, min(changes, len(files)))
    for path in edited:
        lines = path.read_bytes().split(b"\n")
        at = rng.randrange(len(lines) + 1)
        lines.insert(at, f"# night {night}: edited line {rng.randrange(10**9)}".encode())
        path.write_bytes(b"\n".join(lines))
    churn = max(1, changes // 30)
    for i, path in enumerate(rng.sample(files, churn)):
        new = path.with_name(f"new_{night}_{i}{path.suffix}")
        new.write_bytes(path.read_bytes()[:4096] + f"\n# new file {night} {i}\n".encode())
    kept = set(edited)
    for path in rng.sample([f for f in files if f not in kept], churn):
        path.unlink()
    if touch_all:
        stamp = 1_700_000_000 + night * 86_400
        for folder, _, names in os.walk(live):
            for name in names:
                os.utime(os.path.join(folder, name), (stamp, stamp), follow_symlinks=False)
    return {"edited": len(edited), "added": churn, "deleted": churn}


def where_bytes_went(repo_path: Path) -> dict[str, int]:
    """The newest snapshot's blobs that the one before did not reference: count and stored
    bytes of file content and of trees (see the module docstring)."""
    from dedupe.repo import manifests
    from dedupe.repo.repository import Repository
    from dedupe.repo.treewalk import ENTRY, TREE, traverse
    from dedupe.storage.local import LocalStorage

    repo = Repository.open(LocalStorage(str(repo_path)), lambda: PASSWORD.encode())
    repo.cache_dir = None
    snaps = sorted(manifests.load_all(repo), key=lambda s: s.time)
    if len(snaps) < 2:
        return {}

    def blobs(root: bytes) -> tuple[set[bytes], set[bytes]]:
        trees: set[bytes] = set()
        data: set[bytes] = set()
        for visit in traverse(lambda t: _load(repo, t), [root]):
            if visit.kind == TREE:
                trees.add(visit.tree_id)
            elif visit.kind == ENTRY and visit.node is not None:
                data.update(visit.node.content)
        return trees, data

    old_trees, old_data = blobs(snaps[-2].tree)
    new_trees, new_data = blobs(snaps[-1].tree)
    out: dict[str, int] = {"trees_total": len(new_trees)}
    for kind, ids in (("tree", new_trees - old_trees), ("data", new_data - old_data)):
        locations = [repo.index.lookup(blob_id) for blob_id in ids]
        out[f"{kind}_blobs"] = len(ids)
        out[f"{kind}_stored"] = sum(loc.length for loc in locations if loc is not None)
        out[f"{kind}_raw"] = sum(loc.raw_length for loc in locations if loc is not None)
    return out


def _load(repo: Any, tree_id: bytes) -> Any:
    from dedupe.repo.treewalk import load_tree

    return load_tree(repo, tree_id)


def run(args: argparse.Namespace) -> dict[str, Any]:
    notes: list[str] = []
    ensure_installed(TIME_BIN, "time", notes)
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
    live = work / "live" / "src"
    releases = [Path(r) for r in args.releases.split(",")] if args.releases else []
    if releases:
        args.nights = len(releases)
    files = copy_source(releases[0] if releases else args.source, live)
    result: dict[str, Any] = {
        "config": {
            "source": args.releases or str(args.source),
            "files": files,
            "bytes": dir_usage(live)[1],
            "nights": args.nights,
            "changes": args.changes,
            "touch_all": args.touch_all,
            "tools": [t.name for t in tools],
            "baselines": [t.name for t in tools if isinstance(t, DedupeAt)],
        },
        "loadavg_start": os.getloadavg(),
        "notes": notes,
        "nights": [],
    }
    print(f"tree: {files} files, {result['config']['bytes'] / 1e6:.1f} MB", flush=True)
    spaces = {t.name: Workspace(work / "runs" / t.name) for t in tools}
    for tool in tools:
        ws = spaces[tool.name]
        m = run_measured(tool.init(ws)[0], tool.env(ws), home(tool))
        if m.rc != 0:
            raise SystemExit(f"{tool.name} init failed: {m.stderr_tail}")
    for night in range(args.nights):
        rec: dict[str, Any] = {"night": night, "tools": {}}
        if night and releases:
            shutil.rmtree(live)
            rec["mutation"] = {"files": copy_source(releases[night], live)}
        elif night:
            rec["mutation"] = mutate(live, night, args.changes, args.touch_all)
        order = tools[night % len(tools) :] + tools[: night % len(tools)]
        for tool in order:
            ws = spaces[tool.name]
            before = dir_usage(ws.repo)[1]
            argv = tool.snapshot(ws, live, f"night{night}")[0]
            m = run_measured(argv, tool.env(ws), home(tool))
            after = dir_usage(ws.repo)[1]
            one: dict[str, Any] = {
                "wall_s": round(m.wall_s, 3),
                "rc": m.rc,
                "added_bytes": after - before,
            }
            if m.rc != 0:
                one["error"] = m.stderr_tail
            if isinstance(tool, Dedupe) and night and m.rc == 0:
                one["breakdown"] = where_bytes_went(ws.repo)
            rec["tools"][tool.name] = one
        result["nights"].append(rec)
        print(
            f"night {night}: "
            + ", ".join(
                f"{t.name} +{rec['tools'][t.name]['added_bytes'] / 1e3:.0f} kB "
                f"({rec['tools'][t.name]['wall_s']:.1f} s)"
                for t in tools
            ),
            flush=True,
        )
        write_json(args.out, result)
    result["loadavg_end"] = os.getloadavg()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def format_report(result: dict[str, Any]) -> str:
    tools = result["config"]["tools"]
    cfg = result["config"]
    dedupes = [t for t in tools if t.startswith("dedupe") or t in cfg.get("baselines", [])]
    lines = [
        f"{cfg['files']} files, {cfg['bytes'] / 1e6:.1f} MB; {cfg['changes']} files edited a "
        f"night (load {result['loadavg_start'][0]:.1f} -> {result['loadavg_end'][0]:.1f})",
        "",
        "| night | "
        + " | ".join(f"{t} kB added" for t in tools)
        + "".join(f" | {t} / borg" for t in dedupes)
        + " |",
        "| --- " * (len(tools) + len(dedupes) + 1) + "|",
    ]
    for rec in result["nights"]:
        added = [rec["tools"][t]["added_bytes"] / 1e3 for t in tools]
        ratios = ""
        if "borg" in tools:
            borg = max(1, rec["tools"]["borg"]["added_bytes"])
            ratios = "".join(f" | {rec['tools'][t]['added_bytes'] / borg:.2f}" for t in dedupes)
        lines.append(f"| {rec['night']} | " + " | ".join(f"{a:.0f}" for a in added) + ratios + " |")
    if "borg" in tools and "dedupe" in tools and len(result["nights"]) > 1:
        # Night 0 is the first backup; the target is about the nights after it.
        worst = max(
            rec["tools"]["dedupe"]["added_bytes"] / max(1, rec["tools"]["borg"]["added_bytes"])
            for rec in result["nights"][1:]
        )
        lines += [
            "",
            f"[{'ok' if worst <= 1 else 'MISS'}] target 2 (issue 17): growth per night <= Borg's: "
            f"worst night {worst:.2f}x Borg",
        ]
    for name in dedupes:
        lines += [
            "",
            f"{name}, where a night's bytes went (blobs new since the previous snapshot):",
        ]
        lines.append(
            "| night | added kB | file data: blobs, kB stored | trees: blobs (of all), kB stored, "
            "kB raw | packs + index + manifest kB |"
        )
        lines.append("| --- | --- | --- | --- | --- |")
        for rec in result["nights"][1:]:
            one = rec["tools"].get(name, {})
            b = one.get("breakdown")
            if not b:
                continue
            rest = one["added_bytes"] - b["data_stored"] - b["tree_stored"]
            lines.append(
                f"| {rec['night']} | {one['added_bytes'] / 1e3:.0f} | {b['data_blobs']}, "
                f"{b['data_stored'] / 1e3:.0f} | {b['tree_blobs']} ({b['trees_total']}), "
                f"{b['tree_stored'] / 1e3:.0f}, {b['tree_raw'] / 1e3:.0f} | {rest / 1e3:.0f} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.smalltree", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    ap.add_argument("--nights", type=int, default=4)
    ap.add_argument("--changes", type=int, default=300, help="files edited a night")
    ap.add_argument(
        "--touch-all",
        action="store_true",
        help="every file gets a new mtime each night (a new release unpacked over the tree)",
    )
    ap.add_argument(
        "--releases",
        default="",
        metavar="DIR,DIR,...",
        help="back up these folders on successive nights instead of editing --source",
    )
    ap.add_argument("--tools", default="dedupe,restic,borg")
    ap.add_argument("--baseline", action="append", default=[], metavar="[NAME=]DIR")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dedupe-tree")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    result = run(args)
    write_json(args.out, result)
    print(format_report(result), flush=True)
    return 1 if any(r["rc"] for r in result["nights"][-1]["tools"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
