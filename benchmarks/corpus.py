"""Deterministic benchmark corpus: a practice server's data, and its "next night" versions.

``python -m benchmarks.corpus DIR --size 2G [--night N] [--seed S]``

The corpus is a pure function of (seed, size, night), so every tool in a benchmark run and
every machine sees the same bytes. Roughly half of ``--size`` is a pg_dump-style SQL dump
(``practice.sql``, compresses ~4-5x with zstd-3), a quarter incompressible scans (pdf/jpg-like,
100 KB-5 MB each), a quarter a tree of text files (letters, visit notes, configs, CSV exports,
logs; most of them small). Night N mutates DIR in place from night N-1: 1-2 % of the dump's rows
change, rows land in the middle and at the end of tables, files are added, deleted and edited.
File mtimes are deterministic too, so a nightly backup's change detection behaves identically
for every tool. Incompressible bytes come from BLAKE3 in XOF mode (seeded, ~1.4 GB/s), not
``os.urandom``, which is not reproducible.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import blake3

from benchmarks.sqldump import plan_dump, write_dump
from benchmarks.vocab import FIRST_NAMES, LAST_NAMES, REASONS, Pools, build_pools

DUMP_NAME = "practice.sql"
STATE_NAME = ".corpus-state.json"
# Night 0's "now": every mtime is derived from it, so the tree is reproducible.
BASE_TIME = 1_767_578_400  # 2026-01-05 02:00 UTC
DAY = 86_400
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# (kind, share of small-file count, min size, max size)
_SMALL_KINDS = (
    ("letter", 0.45, 2_000, 16_000),
    ("note", 0.50, 800, 6_000),
    ("config", 0.05, 200, 3_000),
)
_BIG_KINDS = (("csv", 100_000, 3_000_000), ("log", 100_000, 4_000_000))
_SCAN_HEADERS = {
    "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
}


@dataclass(frozen=True)
class FileSpec:
    """One file of the tree: enough to render its night-0 bytes without any other state."""

    relpath: str
    kind: str
    size: int
    mtime: int


def parse_size(text: str) -> int:
    """Parse ``300M``, ``2G``, ``1.5G`` or a plain byte count (binary units)."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1] if text and text[-1] in _UNITS else ""
    return int(float(text[: len(text) - len(unit)]) * _UNITS[unit])


def _small_spec(rng: random.Random, idx: int, mtime: int) -> FileSpec:
    kinds = [k for k, _, _, _ in _SMALL_KINDS]
    kind = rng.choices(kinds, weights=[w for _, w, _, _ in _SMALL_KINDS])[0]
    _, _, lo, hi = next(k for k in _SMALL_KINDS if k[0] == kind)
    year = time.gmtime(mtime).tm_year
    last, first = rng.choice(LAST_NAMES), rng.choice(FIRST_NAMES)
    if kind == "letter":
        path = f"documents/letters/{year}/{rng.randint(1, 12):02d}/letter-{last.lower()}-{idx}.txt"
    elif kind == "note":
        path = (
            f"patients/{last.lower()}_{first.lower()}_{idx % 9000}/notes/"
            f"visit-{time.strftime('%Y-%m-%d', time.gmtime(mtime))}-{idx}.txt"
        )
    else:
        path = f"etc/practice/{rng.choice(('pms', 'imaging', 'billing', 'backup'))}/conf-{idx}.ini"
    return FileSpec(path, kind, rng.randint(lo, hi), mtime)


def _big_spec(rng: random.Random, idx: int, mtime: int) -> FileSpec:
    kind, lo, hi = rng.choice(_BIG_KINDS)
    day = time.strftime("%Y-%m-%d", time.gmtime(mtime))
    if kind == "csv":
        path = f"exports/{day[:4]}/report-{day}-{idx}.csv"
    else:
        path = f"logs/{rng.choice(('pms', 'imaging', 'billing'))}/server-{day}-{idx}.log"
    return FileSpec(path, kind, rng.randint(lo, hi), mtime)


def _scan_spec(rng: random.Random, idx: int, mtime: int) -> FileSpec:
    ext = rng.choice(("pdf", "pdf", "jpg"))
    year = time.gmtime(mtime).tm_year
    size = int(rng.lognormvariate(13.5, 0.8))  # median ~730 KB
    path = f"scans/{year}/{rng.randint(1, 12):02d}/patient-{rng.randint(1, 99999)}-{idx}.{ext}"
    return FileSpec(path, "scan", min(5_000_000, max(100_000, size)), mtime)


def plan_files(seed: int, total: int) -> list[FileSpec]:
    """The night-0 file list (everything but the dump): a quarter scans, a quarter text."""
    rng = random.Random(f"{seed}-files")
    specs: list[FileSpec] = []
    budgets = {"scan": total // 4, "big": total // 8, "small": total // 8}
    makers = {"scan": _scan_spec, "big": _big_spec, "small": _small_spec}
    for group, budget in budgets.items():
        used = 0
        while used < budget:
            spec = makers[group](rng, len(specs), BASE_TIME - rng.randint(1, 3 * 365) * DAY)
            # Small corpora (CI, tests) cap file sizes so one big file cannot blow the budget.
            spec = replace(spec, size=min(spec.size, max(4096, budget // 8)))
            specs.append(spec)
            used += spec.size
    return specs


def _text(spec: FileSpec, rng: random.Random, pools: Pools) -> bytes:
    """Render a text file of exactly ``spec.size`` bytes from the shared pools."""
    parts: list[str] = []
    if spec.kind == "letter":
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        parts.append(
            f"Riverside Dental Practice\n12 Main Street, Springfield\n\n"
            f"{rng.choice(pools.dates)}\n\nDear {name},\n\n"
        )
        paras = rng.choices(pools.paragraphs, k=spec.size // 300 + 2)
        parts.append("\n\n".join(paras))
    elif spec.kind == "note":
        parts.append(
            f"Visit {rng.choice(pools.dates)} {rng.choice(pools.times)}\n"
            f"Reason: {rng.choice(REASONS)}\n\n"
        )
        parts.append("\n".join(rng.choices(pools.phrases, k=spec.size // 40 + 2)))
    elif spec.kind == "config":
        keys = rng.choices(
            ("host", "port", "timeout", "path", "user", "retries", "mode"), k=spec.size // 20 + 2
        )
        parts.extend(f"{k}_{i} = {rng.randint(0, 65535)}\n" for i, k in enumerate(keys))
    elif spec.kind == "csv":
        k = spec.size // 60 + 2
        parts.append("date,time,patient,amount,reason\n")
        parts.extend(
            map(
                "%s,%s,%s %s,%s,%s\n".__mod__,
                zip(
                    rng.choices(pools.dates, k=k),
                    rng.choices(pools.times, k=k),
                    rng.choices(FIRST_NAMES, k=k),
                    rng.choices(LAST_NAMES, k=k),
                    rng.choices(pools.amounts, k=k),
                    rng.choices(REASONS, k=k),
                    strict=True,
                ),
            )
        )
    else:
        k = spec.size // 80 + 2
        parts.extend(
            map(
                "%s %s INFO [%s] %s\n".__mod__,
                zip(
                    rng.choices(pools.dates, k=k),
                    rng.choices(pools.times, k=k),
                    rng.choices(("sched", "db", "http", "auth", "print"), k=k),
                    rng.choices(pools.phrases, k=k),
                    strict=True,
                ),
            )
        )
    data = "".join(parts).encode("ascii")[: spec.size - 1]
    return data + b"\n"


def render(spec: FileSpec, seed: int, pools: Pools) -> bytes:
    """The night-0 bytes of one file; scans are BLAKE3-XOF noise behind a real-looking header."""
    if spec.kind == "scan":
        header = _SCAN_HEADERS[spec.relpath.rsplit(".", 1)[1]]
        noise = blake3.blake3(f"{seed}-{spec.relpath}".encode()).digest(spec.size - len(header))
        return header + noise
    return _text(spec, random.Random(f"{seed}-{spec.relpath}"), pools)


def _write(root: Path, relpath: str, data: bytes, mtime: int) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".corpus-tmp")
    tmp.write_bytes(data)
    os.utime(tmp, (mtime, mtime))
    tmp.replace(path)


@dataclass(frozen=True)
class NightChanges:
    """What one night does to the file tree (the dump is handled by ``sqldump``)."""

    added: list[FileSpec]
    deleted: list[str]
    modified: list[str]


def night_changes(seed: int, night: int, existing: list[FileSpec]) -> NightChanges:
    """Pick, from the files that exist after night-1, what this night adds, deletes, edits."""
    rng = random.Random(f"{seed}-night-{night}")
    mtime = BASE_TIME + night * DAY
    n = len(existing)
    base_idx = 10_000_000 * night
    added = [_small_spec(rng, base_idx + i, mtime) for i in range(max(1, n // 200))]
    scan_bytes = sum(s.size for s in existing if s.kind == "scan")
    used = 0
    while used < scan_bytes // 100:
        added.append(_scan_spec(rng, base_idx + len(added), mtime))
        used += added[-1].size
    added.append(FileSpec(f"logs/pms/server-night-{night}.log", "log", 400_000, mtime))
    deleted = [s.relpath for s in rng.sample(existing, max(1, n // 500))]
    gone = set(deleted)
    texts = [s.relpath for s in existing if s.kind != "scan" and s.relpath not in gone]
    modified = rng.sample(texts, max(1, len(texts) // 100))
    return NightChanges(added, deleted, modified)


def _edit(data: bytes, rng: random.Random, pools: Pools, night: int) -> bytes:
    """Insert a paragraph at a line boundary and append a dated line, as a user editing would."""
    cut = data.find(b"\n", rng.randrange(max(1, len(data))))
    cut = len(data) if cut < 0 else cut + 1
    insert = (rng.choice(pools.paragraphs) + "\n").encode("ascii")
    tail = f"[night {night}] {rng.choice(pools.phrases)}\n".encode("ascii")
    return data[:cut] + insert + data[cut:] + tail


def _files_at(seed: int, total: int, night: int) -> list[FileSpec]:
    """The file list after ``night`` nights, replaying each night's plan (no I/O)."""
    specs = plan_files(seed, total)
    for nt in range(1, night + 1):
        ch = night_changes(seed, nt, specs)
        gone = set(ch.deleted)
        specs = [s for s in specs if s.relpath not in gone] + ch.added
    return specs


def apply_night(root: Path, seed: int, total: int, night: int, pools: Pools) -> None:
    """Mutate the file tree in place from night-1 to ``night`` (not the dump)."""
    ch = night_changes(seed, night, _files_at(seed, total, night - 1))
    mtime = BASE_TIME + night * DAY
    for relpath in ch.deleted:
        (root / relpath).unlink()
    for relpath in ch.modified:
        rng = random.Random(f"{seed}-edit-{night}-{relpath}")
        _write(root, relpath, _edit((root / relpath).read_bytes(), rng, pools, night), mtime)
    for spec in ch.added:
        _write(root, spec.relpath, render(spec, seed, pools), spec.mtime)


@dataclass(frozen=True)
class CorpusState:
    """Kept in DIR/.corpus-state.json so ``--night`` knows where DIR stands."""

    seed: int
    size: int
    night: int


def read_state(root: Path) -> CorpusState | None:
    """The state of an existing corpus, or None when DIR holds no corpus yet."""
    path = root / STATE_NAME
    if not path.exists():
        return None
    return CorpusState(**json.loads(path.read_text()))


def _write_dump_job(root: Path, seed: int, size: int, night: int) -> None:
    """Top-level (picklable) so the dump can be written by a second process."""
    pools = build_pools(seed)
    write_dump(root / DUMP_NAME, plan_dump(seed, size // 2, pools), night, pools)
    os.utime(root / DUMP_NAME, (BASE_TIME + night * DAY,) * 2)


def generate(root: Path, size: int, night: int = 0, seed: int = 1) -> CorpusState:
    """Bring DIR to ``night``: build night 0 if DIR has no corpus, then replay later nights.

    The dump (half the bytes, CPU-bound) is written by a second process while this one writes
    the file tree, which roughly halves generation time on two cores.
    """
    state = read_state(root)
    if state is not None and (state.seed, state.size) != (seed, size):
        raise SystemExit(
            f"{root} holds a corpus with seed {state.seed} size {state.size}; "
            "use an empty directory"
        )
    if state is not None and state.night > night:
        raise SystemExit(f"{root} is already at night {state.night}; regenerate into an empty dir")
    root.mkdir(parents=True, exist_ok=True)
    start = 1 if state is None else state.night + 1
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        dump_job = None
        if state is None or start <= night:
            dump_job = pool.submit(_write_dump_job, root, seed, size, night)
        pools = build_pools(seed)
        if state is None:
            for spec in plan_files(seed, size):
                _write(root, spec.relpath, render(spec, seed, pools), spec.mtime)
        for nt in range(start, night + 1):
            apply_night(root, seed, size, nt, pools)
        if dump_job is not None:
            dump_job.result()
    new_state = CorpusState(seed, size, night)
    (root / STATE_NAME).write_text(json.dumps(asdict(new_state)) + "\n")
    os.utime(root / STATE_NAME, (BASE_TIME + night * DAY,) * 2)
    return new_state


def main(argv: list[str] | None = None) -> None:
    """CLI entry point; prints what it made and how long it took."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.corpus", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("dir", type=Path)
    ap.add_argument("--size", default="2G", help="total corpus size, e.g. 300M, 2G (default 2G)")
    ap.add_argument("--night", type=int, default=0, help="0 = initial; N mutates from N-1")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    generate(args.dir, parse_size(args.size), args.night, args.seed)
    files = sum(len(f) for _, _, f in os.walk(args.dir))
    total = sum(e.stat().st_size for e in args.dir.rglob("*") if e.is_file())
    print(
        f"{args.dir}: night {args.night}, {files} files, {total / 1e6:.1f} MB "
        f"in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
