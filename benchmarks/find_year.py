"""How long does `dedupe find` take on a year of nightly snapshots? (issue 14)

``python -m benchmarks.find_year [--workdir DIR] [--size 8M] [--nights 364] [--glob GLOB]``

Builds (or resumes, when DIR has some already) a repository of ``--nights`` + 1 nightly
snapshots of the benchmark corpus (``benchmarks.corpus``): night N mutates night N-1's file
tree in place (files added, edited, deleted); the dump stays as night 0 wrote it, one unchanging
file, since find's cost is in trees, not in file contents. Each snapshot is taken with the
library at its own night's time, as ``dedupe snapshot --time`` would. Then it times:
- ``dedupe find GLOB --json`` as a user runs it (a new process: password, manifests, search,
  JSON), wall clock, best of ``--reps``;
- the search alone through the library (`dedupe.find.find`), with how many trees it read
  against how many it would read without sharing (the sum over snapshots of each one's trees).
Prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from benchmarks.corpus import (
    BASE_TIME,
    DAY,
    STATE_NAME,
    CorpusState,
    apply_night,
    generate,
    parse_size,
)
from benchmarks.vocab import build_pools
from dedupe.backup.session import SnapshotOptions, snapshot_paths
from dedupe.find import compile_pattern, find
from dedupe.model.tree import Node
from dedupe.repo import manifests, treewalk
from dedupe.repo.repository import Repository
from dedupe.storage import open_storage

PASSWORD = "correct horse battery staple"
ROOT = str(Path(__file__).resolve().parent.parent)


def env(repo: Path, cache: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DEDUPE_")},
        "DEDUPE_REPO": str(repo),
        "DEDUPE_PASSWORD": PASSWORD,
        "DEDUPE_CACHE_DIR": str(cache),
        "PYTHONPATH": ROOT,
    }


def dedupe(repo: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "dedupe", *args],
        env=env(repo, cache),
        capture_output=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )


def build(workdir: Path, size: int, nights: int) -> tuple[Path, Path]:
    """The repository with nights 0..nights (resumed where an earlier run stopped)."""
    corpus, repo, cache = workdir / "corpus", workdir / "repo", workdir / "cache"
    if not repo.exists():
        dedupe(repo, cache, "init")
    repository = Repository.open(open_storage(str(repo)), lambda: PASSWORD.encode())
    done = len(repository.snapshot_names())
    if done == 0 and corpus.exists():
        raise SystemExit(f"{corpus} exists but the repository is empty: use an empty --workdir")
    generate(corpus, size, night=max(0, done - 1))
    pools = build_pools(1)
    started = time.perf_counter()
    for night in range(done, nights + 1):
        if night > 0:
            apply_night(corpus, 1, size, night, pools)
            state = CorpusState(seed=1, size=size, night=night)  # where a rerun resumes
            (corpus / STATE_NAME).write_text(json.dumps(asdict(state)) + "\n")
        options = SnapshotOptions(
            time=datetime.fromtimestamp(BASE_TIME + night * DAY, UTC),
            host="frontdesk",
            user="office",
            cache_root=str(cache),
        )
        snapshot_paths(repository, [os.fsencode(corpus)], options)
        if night % 30 == 0 or night < 4:
            print(f"night {night}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return repo, cache


def measure(repo: Path, cache: Path, glob: str, reps: int) -> dict[str, object]:
    walls = []
    out = b""
    for _ in range(reps):
        started = time.perf_counter()
        out = dedupe(repo, cache, "find", glob, "--json").stdout
        walls.append(time.perf_counter() - started)
    started = time.perf_counter()
    dedupe(repo, cache, "snapshots", "--json")
    baseline = time.perf_counter() - started  # startup, password, every manifest: no search

    repository = Repository.open(open_storage(str(repo)), lambda: PASSWORD.encode())
    snaps = manifests.load_all(repository)
    reads: list[bytes] = []

    def counting(tree_id: bytes) -> list[Node]:
        reads.append(tree_id)
        return treewalk.read_tree(repository, tree_id)

    started = time.perf_counter()
    result = find(repository, snaps, compile_pattern(glob), load=counting)
    search = time.perf_counter() - started
    unshared = 0
    for snap in snaps:
        walk = treewalk.traverse(partial(treewalk.load_tree, repository), [snap.tree])
        unshared += sum(1 for visit in walk if visit.kind == treewalk.TREE)
    return {
        "snapshots": len(snaps),
        "glob": glob,
        "matches": len(json.loads(out)),
        "find_cli_seconds_best": round(min(walls), 2),
        "find_cli_seconds_all": [round(w, 2) for w in walls],
        "snapshots_cli_seconds": round(baseline, 2),
        "search_library_seconds": round(search, 2),
        "trees_read": result.trees_read,
        "trees_without_sharing": unshared,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.find_year", description=__doc__)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dedupe-find-year"))
    ap.add_argument("--size", default="8M", help="corpus size at night 0 (default 8M)")
    ap.add_argument("--nights", type=int, default=364, help="nights after night 0 (default 364)")
    ap.add_argument("--glob", default="letter-*.txt")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    repo, cache = build(args.workdir, parse_size(args.size), args.nights)
    print(json.dumps(measure(repo, cache, args.glob, args.reps), indent=2))


if __name__ == "__main__":
    main()
