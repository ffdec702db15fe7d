"""How much time and memory does gc take on a repository of ten million chunks? (#4, #8)

``python -m benchmarks.gc_scale [--entries 10M] [--nights 10] [--forget 4] [--source DIR ...]``

Fills a fresh repository synthetically, with the library, as ``--nights`` nightly snapshots of
``--entries`` data chunks in total: half of the chunks are a folder every snapshot shares, and
each night adds its own folder of the other half's share. Every blob is real (a 16-byte unique
plaintext, sealed, keyed id) and sits in a real pack of ``ENTRIES_PER_PACK`` blobs, so gc can
read, verify and repack them; the blobs are tiny so that ten million of them fit in about 1.5 GB.
Index files name 256 packs each, as a snapshot writes them. The chunks of the last forgotten
night and of the first kept one are written into the same packs (file by file, alternating), so
gc has half-used packs to repack as well as whole packs to delete. Then the first ``--forget``
snapshots are forgotten, and ``dedupe gc --json`` runs (GNU ``time -v``: wall time, peak RSS)
once on a copy of the repository for each ``--source`` (a checkout of dedupe, e.g. an export of
an older commit; default: this one), each with an empty cache folder. A light check follows each
run with this checkout's library: the index loads, no index file is over gc's bound (for gc
runs that bound their files), and every chunk of one file per folder of every kept snapshot
reads back and verifies.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.index_scale import open_repo, parse_count
from benchmarks.tools import Dedupe, Workspace, dir_usage, run_measured
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, FILE, Node, decode_tree, encode_tree
from dedupe.repo import manifests
from dedupe.repo.blob import MODE_RAW
from dedupe.repo.index import decode_index
from dedupe.repo.pack import BlobEntry, PackBuilder
from dedupe.repo.repository import Repository, pack_name

ENTRIES_PER_PACK = 300
PACKS_PER_INDEX_FILE = 256  # as the snapshot writer does
FILE_CHUNKS = 100
FILES_PER_DIR = 1000
T0 = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)


class Filler:
    """Writes blobs into packs (plain file writes: the fill is never interrupted) and an index
    file every PACKS_PER_INDEX_FILE packs through the library."""

    def __init__(self, repo: Repository, seed: int) -> None:
        self.repo = repo
        self.root = Path(repo.storage.url.removeprefix("file://"))
        self.seed = seed
        self.counter = 0
        self.builder = PackBuilder()
        self.pending: list[tuple[bytes, list[BlobEntry]]] = []
        self.blobs = 0

    def chunk(self) -> bytes:
        """A new unique data chunk; returns its id."""
        payload = struct.pack("<QQ", self.seed, self.counter)
        self.counter += 1
        blob_id = self.repo.hash(payload)
        self._add(blob_id, self.repo.sealer.seal_tagged(MODE_RAW, payload), len(payload))
        return blob_id

    def tree(self, nodes: list[Node]) -> bytes:
        data = encode_tree(nodes)
        blob_id = self.repo.hash(data)
        self._add(blob_id, self.repo.blobs.encode(data), len(data))
        return blob_id

    def _add(self, blob_id: bytes, sealed: bytes | bytearray, raw_length: int) -> None:
        self.builder.add(blob_id, sealed, raw_length)
        self.blobs += 1
        if len(self.builder.entries) >= ENTRIES_PER_PACK:
            self._close_pack()

    def _close_pack(self) -> None:
        entries = list(self.builder.entries)
        pack_id, data = self.builder.finish(self.repo.sealer)
        path = self.root / pack_name(pack_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.pending.append((pack_id, entries))
        self.builder = PackBuilder()
        if len(self.pending) >= PACKS_PER_INDEX_FILE:
            self._write_index()

    def _write_index(self) -> None:
        if self.pending:
            self.repo.write_index(self.pending)
            self.pending = []

    def flush(self) -> None:
        if self.builder.entries:
            self._close_pack()
        self._write_index()


def file_node(name: int, content: list[bytes]) -> Node:
    return Node(
        name=f"f{name:06d}".encode(),
        type=FILE,
        mode=0o644,
        mtime_ns=0,
        size=16 * len(content),
        content=tuple(content),
    )


def dir_node(name: bytes, subtree: bytes) -> Node:
    return Node(name=name, type=DIR, mode=0o755, mtime_ns=0, subtree=subtree)


def folder(filler: Filler, files: list[list[bytes]]) -> bytes:
    """A tree of subfolders of FILES_PER_DIR files each; returns its id."""
    subdirs = []
    for start in range(0, len(files), FILES_PER_DIR):
        part = files[start : start + FILES_PER_DIR]
        nodes = [file_node(start + i, content) for i, content in enumerate(part)]
        subdirs.append(dir_node(f"d{start // FILES_PER_DIR:05d}".encode(), filler.tree(nodes)))
    return filler.tree(subdirs)


def fill(repo: Repository, entries: int, nights: int, forget: int) -> list[Snapshot]:
    """Write the nights' chunks, trees and snapshots; returns the snapshots, oldest first."""
    filler = Filler(repo, seed=1)
    base_files = entries // 2 // FILE_CHUNKS
    night_files = (entries - base_files * FILE_CHUNKS) // nights // FILE_CHUNKS
    base = folder(filler, [[filler.chunk() for _ in range(FILE_CHUNKS)] for _ in range(base_files)])
    files: list[list[list[bytes]]] = [[] for _ in range(nights)]
    mixed = (forget - 1, forget) if 0 < forget < nights else ()
    for night in range(nights):
        if mixed and night == mixed[1]:
            continue  # written together with the night before, file by file
        for _ in range(night_files):
            files[night].append([filler.chunk() for _ in range(FILE_CHUNKS)])
            if mixed and night == mixed[0]:
                files[mixed[1]].append([filler.chunk() for _ in range(FILE_CHUNKS)])
    snaps = []
    for night in range(nights):
        night_tree = folder(filler, files[night])
        files[night] = []
        root = filler.tree(
            [dir_node(b"base", base), dir_node(b"night", night_tree)]  # sorted by name
        )
        snaps.append(
            Snapshot(
                id=manifests.new_snapshot_id(),
                time=T0 + timedelta(days=night),
                host="bench",
                user="bench",
                paths=(b"/bench",),
                tags=("gc-scale",),
                tree=root,
            )
        )
    filler.flush()
    for snap in snaps:
        manifests.save(repo, snap)
    return snaps


def _tree(repo: Repository, tree_id: bytes) -> list[Node]:
    return decode_tree(repo.read_blob(tree_id))


def _first_file(repo: Repository, tree_id: bytes) -> Node:
    node = _tree(repo, tree_id)[0]
    return _first_file(repo, node.subtree) if node.subtree is not None else node


def verify(repo_path: Path, kept: list[str]) -> dict[str, Any]:
    """Index files (count, largest in entries) and a read-back of one file per folder of every
    kept snapshot. Raises if a kept snapshot is gone or a chunk does not verify."""
    repo = open_repo(repo_path)
    repo.cache_dir = None
    sizes = []
    for info in repo.storage.list("index/"):
        name = info.name.split("/")[-1]
        index_file = decode_index(repo.storage.get(info.name), repo.sealer, name)
        sizes.append(sum(len(c.ids) // 32 for c in index_file.columns))
    names = set(repo.snapshot_names())
    chunks = 0
    for snap_id in kept:
        if snap_id not in names:
            raise SystemExit(f"kept snapshot {snap_id[:8]} is gone")
        snap = manifests.load(repo, snap_id)
        for top in _tree(repo, snap.tree):
            assert top.subtree is not None
            for chunk in _first_file(repo, top.subtree).content:
                repo.read_blob(chunk)
                chunks += 1
    return {
        "index_files": len(sizes),
        "largest_index_file_entries": max(sizes, default=0),
        "entries": sum(sizes),
        "chunks_read_back": chunks,
    }


def measure(source: Path, template: Path, root: Path, kept: list[str]) -> dict[str, Any]:
    """`dedupe gc --json` with the code at `source` on a copy of `template`."""
    subprocess.run(["rm", "-rf", "--", str(root)], check=True)
    ws = Workspace(root)
    subprocess.run(["cp", "-a", str(template), str(ws.repo)], check=True)
    dedupe = Dedupe()
    dedupe.source_root = str(source)
    load_before = os.getloadavg()
    # cwd: `python -m` puts the working folder first on sys.path, before PYTHONPATH
    m = run_measured([*dedupe.cmd, "gc", "--json"], dedupe.env(ws), cwd=source, timeout=6 * 3600)
    load_after = os.getloadavg()
    if m.rc:
        raise SystemExit(f"dedupe gc ({source}) failed ({m.rc}): {m.stderr_tail}")
    result = json.loads(m.stdout)
    out = {
        "source": str(source),
        "wall_s": m.wall_s,
        "rss_mib": m.max_rss_kib / 1024,
        "load_before": load_before,
        "load_after": load_after,
        "gc": {k: v for k, v in result.items() if k != "damaged_packs"},
        "verify": verify(ws.repo, kept),
    }
    subprocess.run(["rm", "-rf", "--", str(root)], check=True)
    return out


def run(
    workdir: Path, entries: int, nights: int, forget: int, sources: list[Path]
) -> dict[str, Any]:
    """The whole benchmark; returns the figures (also printed)."""
    ws = Workspace(workdir / "tpl")
    saved = workdir / "tpl" / "filled.json"
    if saved.exists():  # --keep left a filled template: measure other sources on it
        facts = json.loads(saved.read_text())
    else:
        facts = _fill_template(ws, entries, nights, forget)
        saved.write_text(json.dumps(facts))
    kept = facts["kept"]
    print(
        f"filled: {facts['entries']} data chunks in {facts['nights']} snapshots, "
        f"{facts['repo_bytes'] / 1e6:.0f} MB ({facts['index_file_bytes'] / 1e6:.0f} MB of index "
        f"files) in {facts['fill_s']:.0f} s; {facts['forget']} forgotten",
        flush=True,
    )
    runs = []
    for source in sources:
        res = measure(source, ws.repo, workdir / "run", kept)
        runs.append(res)
        g = res["gc"]
        print(
            f"gc [{source}]: {res['wall_s']:.1f} s, peak RSS {res['rss_mib']:.0f} MiB; freed "
            f"{g['freed_bytes'] / 1e6:.0f} MB, {g['packs_deleted']} packs deleted, "
            f"{g['packs_rewritten']} rewritten, {g['live_blobs']} live blobs; "
            f"load {res['load_before'][0]:.1f} -> {res['load_after'][0]:.1f}; "
            f"{res['verify']}",
            flush=True,
        )
    return {**{k: v for k, v in facts.items() if k != "kept"}, "runs": runs}


def _fill_template(ws: Workspace, entries: int, nights: int, forget: int) -> dict[str, Any]:
    dedupe = Dedupe()
    init = run_measured([*dedupe.cmd, "init"], dedupe.env(ws))
    if init.rc:
        raise SystemExit(f"dedupe init failed ({init.rc}): {init.stderr_tail}")
    started = time.perf_counter()
    snaps = fill(open_repo(ws.repo), entries, nights, forget)
    fill_s = time.perf_counter() - started
    repo = open_repo(ws.repo)
    for snap in snaps[:forget]:
        manifests.delete(repo, snap)
    return {
        "entries": entries,
        "nights": nights,
        "forget": forget,
        "repo_bytes": dir_usage(ws.repo)[1],
        "index_file_bytes": dir_usage(ws.repo / "index")[1],
        "fill_s": fill_s,
        "kept": [s.id for s in snaps[forget:]],
    }


def main(argv: list[str] | None = None) -> None:
    """CLI entry point; the workdir is removed afterwards unless --keep is given."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.gc_scale", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--entries", default="10M", help="data chunks (10M, 300K, ...)")
    ap.add_argument("--nights", type=int, default=10)
    ap.add_argument("--forget", type=int, default=4)
    ap.add_argument(
        "--source",
        type=Path,
        action="append",
        help="a dedupe checkout whose gc to run (repeatable; default: this one)",
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dedupe-gc-scale"))
    ap.add_argument("--out", type=Path, default=Path("bench-out/gc_scale.json"))
    ap.add_argument(
        "--keep", action="store_true", help="keep the workdir (a later run reuses its filling)"
    )
    args = ap.parse_args(argv)
    sources = [p.resolve() for p in args.source or [Path(__file__).parents[1]]]
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args.workdir, parse_count(args.entries), args.nights, args.forget, sources)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", "--", str(args.workdir)], check=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    sys.exit(main())
