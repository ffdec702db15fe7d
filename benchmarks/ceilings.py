"""This machine's component speed limits, and the pipeline ceiling they imply for the corpus.

``python -m benchmarks.ceilings [--corpus DIR] [--sample-mb 64] [--json FILE]``

A backup in Python is fast only if the compiled libraries do the work: FastCDC chunking, BLAKE3
hashing, zstd compression and SecretBox encryption all release the GIL. Each is timed here on
samples of the benchmark corpus itself (dump, scans, text; with one and with two threads), so the
runner can state how close dedupe comes to what two cores can do at best:

    seconds_per_byte = sum over parts p of weight_p * (1/chunk + 1/hash + 1/compress_p
                                                        + ratio_p/encrypt)
    ceiling = argon2id_unlock + corpus_bytes * seconds_per_byte   (rates measured on 2 threads)

Per-file costs (directory walk, metadata, Python per file) are deliberately left out: the
ceiling is the data path only, so a real pipeline can approach it but never exceed it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import blake3
import nacl.pwhash
import nacl.secret
import nacl.utils
import zstandard
from pyfastcdc import FastCDC

from benchmarks.corpus import DUMP_NAME, STATE_NAME, generate

CHUNK_AVG = 64 * 1024
PARTS = ("dump", "scans", "text")


def sample_corpus(root: Path, sample_bytes: int) -> tuple[dict[str, bytes], dict[str, float]]:
    """Read up to ``sample_bytes`` of each part of a corpus, and each part's share of its bytes."""
    totals = dict.fromkeys(PARTS, 0)
    samples: dict[str, list[bytes]] = {p: [] for p in PARTS}
    taken = dict.fromkeys(PARTS, 0)
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(dirpath, name)
            if name == STATE_NAME:
                continue
            part = "dump" if name == DUMP_NAME else "scans" if "/scans/" in str(path) else "text"
            size = path.stat().st_size
            totals[part] += size
            if taken[part] < sample_bytes:
                with open(path, "rb") as f:
                    data = f.read(sample_bytes - taken[part])
                samples[part].append(data)
                taken[part] += len(data)
    grand = sum(totals.values()) or 1
    return {p: b"".join(samples[p]) for p in PARTS}, {p: totals[p] / grand for p in PARTS}


def _timed(
    work: Callable[[Sequence[Any]], None],
    chunks: Sequence[Any],
    threads: int,
    min_seconds: float = 0.3,
    min_trials: int = 3,
) -> float:
    """Best MB/s of ``work`` over ``chunks`` split across ``threads``.

    The best trial, not the mean: a ceiling is an upper bound, and on a shared machine the
    slower trials measure the neighbours, not the library.
    """
    nbytes = sum(len(c) for c in chunks)
    shares = [chunks[i::threads] for i in range(threads)]
    best, trials, started = 0.0, 0, time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        while trials < min_trials or time.perf_counter() - started < min_seconds:
            t0 = time.perf_counter()
            list(pool.map(work, shares))
            best = max(best, nbytes / (time.perf_counter() - t0) / 1e6)
            trials += 1
    return best


def _chunks(data: bytes) -> list[memoryview]:
    return [c.data for c in FastCDC(CHUNK_AVG).cut_buf(memoryview(data))]


def measure_components(
    samples: dict[str, bytes], thread_counts: Sequence[int] = (1, 2)
) -> dict[str, Any]:
    """MB/s per component and thread count; zstd rates and ratios per corpus part."""
    box = nacl.secret.SecretBox(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE))
    key = nacl.utils.random(32)
    chunks = {p: _chunks(d) for p, d in samples.items() if d}
    dump = chunks["dump"]
    compressed = [memoryview(zstandard.ZstdCompressor(level=3).compress(c)) for c in dump]
    # pynacl's cffi binding takes bytes only, so its inputs are materialised up front.
    plain = [bytes(c) for c in dump]
    sealed = [box.encrypt(c) for c in plain]
    blocks = [
        memoryview(samples["dump"])[i : i + (8 << 20)]
        for i in range(0, len(samples["dump"]), 8 << 20)
    ]

    def chunk(parts: Sequence[memoryview]) -> None:
        cdc = FastCDC(CHUNK_AVG)
        for part in parts:
            for _ in cdc.cut_buf(part):
                pass

    def hash_(parts: Sequence[memoryview]) -> None:
        for c in parts:
            blake3.blake3(c, key=key).digest()

    def compress(parts: Sequence[memoryview]) -> None:
        cctx = zstandard.ZstdCompressor(level=3)
        for c in parts:
            cctx.compress(c)

    def decompress(parts: Sequence[memoryview]) -> None:
        dctx = zstandard.ZstdDecompressor()
        for c in parts:
            dctx.decompress(c)

    def encrypt(parts: Sequence[bytes]) -> None:
        for c in parts:
            box.encrypt(c)

    def decrypt(parts: Sequence[bytes]) -> None:
        for c in parts:
            box.decrypt(c)

    rates: dict[str, dict[int, float]] = {}
    for t in thread_counts:
        rates.setdefault("chunk (fastcdc)", {})[t] = _timed(chunk, blocks, t)
        rates.setdefault("hash (blake3 keyed)", {})[t] = _timed(hash_, dump, t)
        for part, cs in chunks.items():
            rates.setdefault(f"zstd-3 compress {part}", {})[t] = _timed(compress, cs, t)
        rates.setdefault("zstd decompress dump", {})[t] = (
            _timed(decompress, compressed, t) * sum(map(len, dump)) / sum(map(len, compressed))
        )
        rates.setdefault("secretbox encrypt", {})[t] = _timed(encrypt, plain, t)
        rates.setdefault("secretbox decrypt", {})[t] = _timed(decrypt, sealed, t)
    ratios = {}
    for part, cs in chunks.items():
        cctx = zstandard.ZstdCompressor(level=3)
        ratios[part] = sum(len(cctx.compress(c)) for c in cs) / max(1, sum(map(len, cs)))
    started = time.perf_counter()
    nacl.pwhash.argon2id.kdf(
        32,
        b"benchmark password",
        b"\0" * 16,
        opslimit=nacl.pwhash.argon2id.OPSLIMIT_MODERATE,
        memlimit=nacl.pwhash.argon2id.MEMLIMIT_MODERATE,
    )
    argon2_s = time.perf_counter() - started
    return {
        "rates_mb_s": rates,
        "compressed_ratio": ratios,
        "argon2id_moderate_s": argon2_s,
        "chunk_avg": CHUNK_AVG,
    }


def pipeline_ceiling(
    comp: dict[str, Any], weights: dict[str, float], corpus_bytes: int, threads: int = 2
) -> dict[str, float]:
    """The best snapshot and restore times the measured components allow on ``threads`` cores."""
    # More cores can always do at least what fewer did; on a busy machine the two-thread trial
    # can come out slower, which says more about the neighbours than about the ceiling.
    r = {
        name: max(v for t, v in by_t.items() if int(t) <= threads) * 1e6
        for name, by_t in comp["rates_mb_s"].items()
    }
    per_byte = 0.0
    for part, w in weights.items():
        compress = r.get(f"zstd-3 compress {part}", r["zstd-3 compress dump"])
        ratio = comp["compressed_ratio"].get(part, 1.0)
        per_byte += w * (
            1 / r["chunk (fastcdc)"]
            + 1 / r["hash (blake3 keyed)"]
            + 1 / compress
            + ratio / r["secretbox encrypt"]
        )
    restore_per_byte = sum(
        w
        * (
            comp["compressed_ratio"].get(p, 1.0) / r["secretbox decrypt"]
            + 1 / r["zstd decompress dump"]
            + 1 / r["hash (blake3 keyed)"]
        )
        for p, w in weights.items()
    )
    argon = comp["argon2id_moderate_s"]
    return {
        "threads": threads,
        "snapshot_mb_s": 1 / per_byte / 1e6,
        "snapshot_s": argon + corpus_bytes * per_byte,
        "restore_mb_s": 1 / restore_per_byte / 1e6,
        "restore_s": argon + corpus_bytes * restore_per_byte,
    }


def measure(corpus: Path | None = None, sample_mb: int = 64) -> dict[str, Any]:
    """Sample ``corpus`` (or a small generated one), time components, compute ceilings."""
    with tempfile.TemporaryDirectory(prefix="dedupe-ceil-") as tmp:
        root = corpus
        if root is None:
            root = Path(tmp) / "corpus"
            generate(root, sample_mb * 4 << 20)
        samples, weights = sample_corpus(root, sample_mb << 20)
        corpus_bytes = sum(e.stat().st_size for e in root.rglob("*") if e.is_file())
    load_before = os.getloadavg()[0]
    comp = measure_components(samples)
    comp["loadavg_1min"] = max(load_before, os.getloadavg()[0])
    comp["weights"] = weights
    comp["corpus_bytes"] = corpus_bytes
    comp["ceiling_1core"] = pipeline_ceiling(comp, weights, corpus_bytes, 1)
    comp["ceiling_2core"] = pipeline_ceiling(comp, weights, corpus_bytes, 2)
    return comp


def format_report(comp: dict[str, Any]) -> str:
    """A human table of component speeds and the ceilings."""
    lines = [f"{'component':<28}{'1 thread MB/s':>15}{'2 threads MB/s':>16}"]
    for name, by_t in comp["rates_mb_s"].items():
        lines.append(f"{name:<28}{by_t.get(1, 0):>15.0f}{by_t.get(2, 0):>16.0f}")
    ratios = ", ".join(f"{p} {v:.3f}" for p, v in comp["compressed_ratio"].items())
    lines.append(f"zstd-3 compressed/original: {ratios}")
    lines.append(f"Argon2id (pynacl MODERATE): {comp['argon2id_moderate_s']:.2f} s")
    if comp.get("loadavg_1min", 0) > 0.5 * (os.cpu_count() or 1):
        lines.append(
            f"WARNING: load average {comp['loadavg_1min']:.1f} on {os.cpu_count()} "
            "CPUs while measuring; these ceilings are low and unreliable"
        )
    for key in ("ceiling_1core", "ceiling_2core"):
        c = comp[key]
        lines.append(
            f"{c['threads']}-core ceiling for {comp['corpus_bytes'] / 1e6:.0f} MB corpus: "
            f"snapshot {c['snapshot_s']:.2f} s ({c['snapshot_mb_s']:.0f} MB/s), "
            f"restore {c['restore_s']:.2f} s ({c['restore_mb_s']:.0f} MB/s)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ceilings")
    ap.add_argument("--corpus", type=Path, help="corpus dir to sample (default: generate one)")
    ap.add_argument("--sample-mb", type=int, default=64)
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args(argv)
    comp = measure(args.corpus, args.sample_mb)
    print(format_report(comp))
    if args.json:
        args.json.write_text(json.dumps(comp, indent=2))


if __name__ == "__main__":
    main()
