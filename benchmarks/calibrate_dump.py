"""How much of the SQL dump a nightly backup re-stores, per chunk size (FastCDC, seed 0).

``python -m benchmarks.calibrate_dump [--dump-size 1G] [--night 1] [--chunks 1M,64K,16K]``

Writes night 0 and night N of the dump (``benchmarks.sqldump``) to a temporary directory, cuts
both with FastCDC at each average chunk size (min avg/4, max 4*avg, normalized chunking 1, seed
0: the parameters dedupe's chunker uses) and prints, per size, the share of night N's bytes and
chunks that night 0 does not already hold, plus what those new chunks cost after zstd-3. This
is the number the nightly change model in ``sqldump`` is calibrated against: the speed issue
measured ~77 % (1 MiB), ~22 % (64 KiB) and ~8 % (16 KiB) on a real 1 GiB practice dump.
"""

from __future__ import annotations

import argparse
import mmap
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import blake3
import zstandard
from pyfastcdc import FastCDC

from benchmarks.corpus import parse_size
from benchmarks.sqldump import plan_dump, write_dump
from benchmarks.vocab import build_pools

DEFAULT_CHUNKS = (1 << 20, 64 << 10, 16 << 10)
# What the issue measured on a real 1 GiB dump (share of the dump re-stored per night).
ISSUE_SHARES = {1 << 20: 0.77, 64 << 10: 0.22, 16 << 10: 0.08}


@dataclass(frozen=True)
class ChunkShare:
    """What one night of the dump adds to a repository that holds the night before."""

    avg_size: int
    chunks: int
    new_chunks: int
    new_bytes: int
    total_bytes: int
    new_compressed: int  # zstd-3, chunk by chunk; 0 when not measured

    @property
    def byte_share(self) -> float:
        return self.new_bytes / max(1, self.total_bytes)

    @property
    def chunk_share(self) -> float:
        return self.new_chunks / max(1, self.chunks)


def _cdc(avg_size: int) -> FastCDC:
    return FastCDC(
        avg_size,
        min_size=max(64, avg_size // 4),
        max_size=avg_size * 4,
        normalized_chunking=1,
        seed=0,
    )


def restored_share(
    old: bytes | memoryview | mmap.mmap,
    new: bytes | memoryview | mmap.mmap,
    avg_size: int,
    compress: bool = True,
) -> ChunkShare:
    """Chunk ``old`` and ``new``; count the chunks of ``new`` whose content ``old`` lacks."""
    known = {blake3.blake3(c.data).digest() for c in _cdc(avg_size).cut_buf(memoryview(old))}
    seen: set[bytes] = set()
    chunks = new_chunks = new_bytes = new_compressed = 0
    zc = zstandard.ZstdCompressor(level=3)
    for c in _cdc(avg_size).cut_buf(memoryview(new)):
        chunks += 1
        digest = blake3.blake3(c.data).digest()
        if digest in known or digest in seen:
            continue
        seen.add(digest)
        new_chunks += 1
        new_bytes += c.length
        if compress:
            new_compressed += len(zc.compress(c.data))
    return ChunkShare(avg_size, chunks, new_chunks, new_bytes, len(new), new_compressed)


def measure(
    dump_bytes: int,
    night: int = 1,
    seed: int = 1,
    chunk_sizes: Sequence[int] = DEFAULT_CHUNKS,
    compress: bool = True,
    workdir: Path | None = None,
) -> list[ChunkShare]:
    """Write nights 0 and ``night`` of a dump of about ``dump_bytes``; measure each size."""
    pools = build_pools(seed)
    plan = plan_dump(seed, dump_bytes, pools)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="calibrate-dump-") as tmp:
        paths = [Path(tmp, "night0.sql"), Path(tmp, f"night{night}.sql")]
        write_dump(paths[0], plan, 0, pools)
        write_dump(paths[1], plan, night, pools)
        with (
            open(paths[0], "rb") as f0,
            open(paths[1], "rb") as f1,
            mmap.mmap(f0.fileno(), 0, access=mmap.ACCESS_READ) as old,
            mmap.mmap(f1.fileno(), 0, access=mmap.ACCESS_READ) as new,
        ):
            return [restored_share(old, new, size, compress) for size in chunk_sizes]


def format_table(shares: Sequence[ChunkShare]) -> str:
    """A Markdown table: one row per chunk size, with the issue's figure beside ours."""
    lines = [
        "| avg chunk | chunks | new chunks | re-stored share | issue | added (zstd-3) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in shares:
        size = f"{s.avg_size >> 20} MiB" if s.avg_size >= 1 << 20 else f"{s.avg_size >> 10} KiB"
        issue = ISSUE_SHARES.get(s.avg_size)
        lines.append(
            f"| {size} | {s.chunks} | {s.new_chunks} | {s.byte_share:.1%} | "
            f"{'' if issue is None else f'{issue:.0%}'} | "
            f"{s.new_compressed / 1e6:.1f} MB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the calibration table for one dump size."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.calibrate_dump", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--dump-size", default="1G", help="dump size, e.g. 256M, 1G (default 1G)")
    ap.add_argument("--night", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunks", default="1M,64K,16K", help="average chunk sizes to measure")
    ap.add_argument("--no-compress", action="store_true", help="skip the zstd-3 column")
    ap.add_argument("--workdir", type=Path, default=None, help="where the two dumps go")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    shares = measure(
        parse_size(args.dump_size),
        args.night,
        args.seed,
        [parse_size(c) for c in args.chunks.split(",")],
        not args.no_compress,
        args.workdir,
    )
    print(
        f"dump {shares[0].total_bytes / 2**20:.0f} MiB, night {args.night} vs night 0, "
        f"seed {args.seed} ({time.perf_counter() - started:.1f} s)"
    )
    print(format_table(shares))


if __name__ == "__main__":
    main()
