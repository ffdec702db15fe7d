"""Does a large chunk index slow snapshots down? (speed issue, item 3)

``python -m benchmarks.index_scale [--entries 10M] [--size 500M] [--reps 3] [--workdir DIR]``

A repository of a few TB in small chunks holds tens of millions of index entries. This fills a
fresh repository's index synthetically: ``--entries`` random blob ids spread over fake pack ids,
written with the library (``Repository.write_index``) as a handful of index files, the way a
long-lived repository's consolidated index looks. The packs do not exist; that is harmless for a
snapshot of other data, because keyed BLAKE3 ids of real chunks never collide with random ids,
so no entry is ever dereferenced. Then the same ~``--size`` folder (the benchmark corpus) is
snapshotted, ``--reps`` times each in rotation, into a copy of an empty repository and into
copies of the filled one: "cold" with an empty cache folder (the command builds the local index
cache, as the first command after an upgrade or a gc does) and "warm" with the cache a previous
command left (every later command). Medians of wall time and peak RSS (GNU ``time -v``) are
compared with the issue's targets: throughput within 10 % of the empty repository's, peak RSS
under 1 GiB; the targets are judged on the warm runs, the steady state.

It also times ``Repository.load_index`` in-process on the filled repository: without a cache,
cold (building it) and warm (and, with ``--profile``, prints where the uncached time goes),
since every command that writes or reads blobs pays it once.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus import generate, parse_size
from benchmarks.tools import PASSWORD, Dedupe, Workspace, dir_usage, run_measured
from dedupe.repo.pack import BlobEntry
from dedupe.repo.repository import Repository
from dedupe.storage import open_storage

ENTRIES_PER_PACK = 300  # ~16 MiB packs of ~55 KB compressed chunks
TARGET_RATIO = 1.10  # filled repository's wall time at most 10 % above the empty one's
TARGET_RSS_MIB = 1024


def parse_count(text: str) -> int:
    """``10M`` -> 10_000_000, ``300K`` -> 300_000 (decimal units), or a plain number."""
    text = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def open_repo(repo: Path) -> Repository:
    """Unlock a repository made by ``dedupe init`` with the benchmark password."""
    return Repository.open(open_storage(str(repo)), lambda: PASSWORD.encode())


def write_fake_index(
    repository: Repository,
    entries: int,
    files: int = 8,
    seed: int = 0,
    per_pack: int = ENTRIES_PER_PACK,
) -> list[bytes]:
    """Write ``entries`` random blob ids in fake packs as ``files`` index files.

    Returns the first blob id of every index file, for spot checks. Entries are built one index
    file at a time, so the writer's memory stays at one file's worth.
    """
    rng = np.random.default_rng(seed)
    per_file = -(-entries // files)
    firsts: list[bytes] = []
    done = 0
    while done < entries:
        count = min(per_file, entries - done)
        ids = rng.bytes(32 * count)
        lengths = rng.integers(20_000, 120_000, count).tolist()
        packs: list[tuple[bytes, list[BlobEntry]]] = []
        for first in range(0, count, per_pack):
            offset = 0
            blobs: list[BlobEntry] = []
            for i in range(first, min(count, first + per_pack)):
                blobs.append(
                    BlobEntry(ids[32 * i : 32 * i + 32], offset, lengths[i], 4 * lengths[i])
                )
                offset += lengths[i]
            packs.append((rng.bytes(32), blobs))
        repository.write_index(packs)
        firsts.append(ids[:32])
        done += count
        del packs, ids
        gc.collect()
    return firsts


def fill_index(repo: Path, entries: int, files: int = 8) -> float:
    """Fill the index of the repository at ``repo`` (see ``write_fake_index``); seconds taken."""
    started = time.perf_counter()
    write_fake_index(open_repo(repo), entries, files)
    return time.perf_counter() - started


@dataclass(frozen=True)
class LoadTiming:
    """One in-process ``load_index`` of a repository."""

    entries: int
    seconds: float
    retained_mib: float  # resident memory the loaded index keeps (RSS after - before)
    peak_mib: float  # peak RSS during the load, above the RSS before it
    profile: str


def _proc_status_mib(field_name: str) -> float:
    """``VmRSS`` or ``VmHWM`` of this process in MiB (Linux), else 0."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the Argon2id unlock's peak is gone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def time_load_index(
    repo: Path, cache_dir: Path | None = None, profile: bool = False, top: int = 14
) -> LoadTiming:
    """Time ``Repository.load_index`` with the local index cache in ``cache_dir`` (None: no
    cache); optionally profile it (cumulative, top functions)."""
    repository = open_repo(repo)
    repository.cache_dir = str(cache_dir) if cache_dir is not None else None
    gc.collect()
    _reset_peak_rss()
    rss_before = _proc_status_mib("VmRSS")
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    index = repository.load_index()
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    retained = _proc_status_mib("VmRSS") - rss_before
    peak = _proc_status_mib("VmHWM") - rss_before
    text = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
        text = out.getvalue()
    return LoadTiming(len(index), seconds, retained, peak, text)


def _snapshot(
    dedupe: Dedupe, template: Path, run_root: Path, data: Path, cache: Path | None = None
) -> dict[str, Any]:
    """Copy a template repository, snapshot ``data`` into the copy with a fresh cache folder,
    or one holding the index cache of ``cache`` (hard links: the cache file is only ever
    replaced, never written in place)."""
    subprocess.run(["rm", "-rf", "--", str(run_root)], check=True)
    ws = Workspace(run_root)
    subprocess.run(["rm", "-rf", "--", str(ws.repo)], check=True)
    subprocess.run(["cp", "-a", str(template), str(ws.repo)], check=True)
    if cache is not None:
        subprocess.run(["cp", "-al", str(cache), str(ws.cache / "dedupe")], check=True)
    m = run_measured(dedupe.snapshot(ws, data, "scale")[0], dedupe.env(ws))
    if m.rc:
        raise SystemExit(f"dedupe snapshot failed ({m.rc}): {m.stderr_tail}")
    result = {"wall_s": m.wall_s, "rss_mib": m.max_rss_kib / 1024}
    subprocess.run(["rm", "-rf", "--", str(run_root)], check=True)
    return result


def _init(dedupe: Dedupe, root: Path) -> Path:
    ws = Workspace(root)
    m = run_measured(dedupe.init(ws)[0], dedupe.env(ws))
    if m.rc:
        raise SystemExit(f"dedupe init failed ({m.rc}): {m.stderr_tail}")
    return ws.repo


def run(workdir: Path, entries: int, size: int, reps: int, profile: bool) -> dict[str, Any]:
    """The whole benchmark; returns the figures (also printed)."""
    dedupe = Dedupe()
    data = workdir / "data"
    started = time.perf_counter()
    generate(data, size, 0)
    data_bytes = dir_usage(data)[1]
    print(f"data: {data_bytes / 1e6:.0f} MB ({time.perf_counter() - started:.1f} s)", flush=True)
    templates = {
        "empty": _init(dedupe, workdir / "tpl-empty"),
        "filled": _init(dedupe, workdir / "tpl-filled"),
    }
    fill_s = fill_index(templates["filled"], entries)
    index_bytes = dir_usage(templates["filled"] / "index")[1]
    print(
        f"index: {entries} entries, {index_bytes / 1e6:.0f} MB of index files, written in "
        f"{fill_s:.1f} s",
        flush=True,
    )
    loads = {
        "uncached": time_load_index(templates["filled"], None, profile),
        "cold": time_load_index(templates["filled"], workdir / "tpl-cache"),
        "warm": time_load_index(templates["filled"], workdir / "tpl-cache"),
    }
    for kind, load in loads.items():
        per_entry = load.retained_mib * 2**20 / max(1, load.entries)
        print(
            f"load_index {kind:>8}: {load.entries} entries in {load.seconds:.2f} s; keeps "
            f"{load.retained_mib:.0f} MiB ({per_entry:.0f} B/entry), peak during load "
            f"+{load.peak_mib:.0f} MiB",
            flush=True,
        )
        if load.profile:
            print(load.profile, flush=True)
    kinds = {
        "empty": (templates["empty"], None),
        "cold": (templates["filled"], None),
        "warm": (templates["filled"], workdir / "tpl-cache"),
    }
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for rep in range(reps):
        order = list(kinds)[rep % 3 :] + list(kinds)[: rep % 3]
        for kind in order:
            template, cache = kinds[kind]
            res = _snapshot(dedupe, template, workdir / f"run-{kind}", data, cache)
            runs[kind].append(res)
            print(
                f"rep {rep + 1}/{reps} {kind}: {res['wall_s']:.2f} s, {res['rss_mib']:.0f} MiB",
                flush=True,
            )
    med = {
        k: {
            "wall_s": statistics.median(r["wall_s"] for r in v),
            "rss_mib": statistics.median(r["rss_mib"] for r in v),
            "max_rss_mib": max(r["rss_mib"] for r in v),
        }
        for k, v in runs.items()
    }
    ratios = {k: med[k]["wall_s"] / med["empty"]["wall_s"] for k in ("cold", "warm")}
    result = {
        "entries": entries,
        "data_bytes": data_bytes,
        "index_file_bytes": index_bytes,
        "fill_s": fill_s,
        "load_index": {
            kind: {
                "seconds": load.seconds,
                "retained_mib": load.retained_mib,
                "peak_mib": load.peak_mib,
                "profile": load.profile,
            }
            for kind, load in loads.items()
        },
        "runs": runs,
        "medians": med,
        "wall_ratio": ratios["warm"],
        "wall_ratio_cold": ratios["cold"],
        "targets": {
            "throughput_within_10pct": ratios["warm"] <= TARGET_RATIO,
            "rss_under_1gib": med["warm"]["max_rss_mib"] < TARGET_RSS_MIB,
            "cold_rss_under_1gib": med["cold"]["max_rss_mib"] < TARGET_RSS_MIB,
        },
    }
    for kind in kinds:
        m = med[kind]
        print(
            f"{kind:>6}: {m['wall_s']:.2f} s ({data_bytes / 1e6 / m['wall_s']:.0f} MB/s), "
            f"peak RSS {m['rss_mib']:.0f} MiB (max {m['max_rss_mib']:.0f})"
        )
    for kind in ("cold", "warm"):
        print(
            f"filled ({kind})/empty wall time {ratios[kind]:.2f} (target <= {TARGET_RATIO:.2f}): "
            f"{'ok' if ratios[kind] <= TARGET_RATIO else 'MISS'}; peak RSS "
            f"{med[kind]['max_rss_mib']:.0f} MiB (target < {TARGET_RSS_MIB}): "
            f"{'ok' if med[kind]['max_rss_mib'] < TARGET_RSS_MIB else 'MISS'}"
        )
    return result


def main(argv: list[str] | None = None) -> None:
    """CLI entry point; the workdir is removed afterwards unless --keep is given."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.index_scale", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--entries", default="10M", help="index entries (10M, 300K, ...)")
    ap.add_argument("--size", default="500M", help="size of the snapshotted folder")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dedupe-index-scale"))
    ap.add_argument("--out", type=Path, default=Path("bench-out/index_scale.json"))
    ap.add_argument("--profile", action="store_true", help="profile the uncached load_index")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    args = ap.parse_args(argv)
    entries = parse_count(args.entries)
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args.workdir, entries, parse_size(args.size), args.reps, args.profile)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", "--", str(args.workdir)], check=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
