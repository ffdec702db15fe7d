"""SFTP throughput of the CLI on a private loopback sshd: snapshot to sftp://, copy local -> sftp,
restore from sftp://, plus the backend alone (one 256 MiB put and get through `SFTPStorage`).

``python -m benchmarks.sftp_speed [--size 300M] [--reps 3] [--workdir DIR]``

The sshd is the one the tests use (`tests.servers.start_sftp_server`: OpenSSH, internal-sftp,
127.0.0.1), the corpus the deterministic one of `benchmarks.corpus` (SQL dump, scans, a tree of
small text files), the CLI the tests' (`tests.clitools.Cli`: cheap Argon2id, so the KDF does
not count). Each step runs `--reps` times on a new repository; the median is reported, in MiB/s
of corpus bytes (the repository stores less: the dump compresses). The machine is shared: look
at the spread, not only the median.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.corpus import generate, parse_size
from tests.clitools import Cli
from tests.servers import SFTPServer, start_sftp_server

MIB = 1024 * 1024


def _timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _cli(server: SFTPServer, work: Path, name: str) -> Cli:
    cli = Cli(server.url(f"{server.root}/{name}-{uuid.uuid4().hex[:8]}"), str(work / "cache"))
    cli.env |= server.env()
    return cli


def _raw(server: SFTPServer, size: int) -> tuple[float, float]:
    """Seconds for one put and one get of `size` random bytes through the backend alone."""
    from dedupe.storage.sftp import SFTPStorage

    storage = SFTPStorage.from_url(
        server.url(f"{server.root}/raw-{uuid.uuid4().hex[:8]}"),
        create=True,
        identity=server.identity,
        known_hosts=server.known_hosts,
    )
    try:
        data = os.urandom(size)
        storage.put("warm", b"x")
        put = _timed(lambda: storage.put("data/ab/blob", data))
        got: list[bytes] = []
        get = _timed(lambda: got.append(storage.get("data/ab/blob")))
        assert got[0] == data, "the object came back different"
        return put, get
    finally:
        storage.close()


def run(size: int, reps: int, work: Path) -> dict[str, list[float]]:
    corpus = work / "corpus"
    generate(corpus, size)
    total = sum(e.stat().st_size for e in corpus.rglob("*") if e.is_file())
    server = start_sftp_server(str(work / "sshd"))
    results: dict[str, list[float]] = {}
    try:
        local = Cli(str(work / "local"), str(work / "cache"))
        if not (work / "local").exists():
            local("init", "-q")
            local("snapshot", "-q", str(corpus))
        for rep in range(reps):
            remote = _cli(server, work, "snap")
            remote("init", "-q")
            secs = _timed(lambda: remote("snapshot", "-q", str(corpus)))
            results.setdefault("snapshot -> sftp", []).append(total / MIB / secs)
            target = work / f"restore-{rep}"
            secs = _timed(lambda: remote("restore", "-q", "latest", "--target", str(target)))
            results.setdefault("restore <- sftp", []).append(total / MIB / secs)
            shutil.rmtree(target)
            dest = _cli(server, work, "copy")
            dest("init", "-q")
            secs = _timed(lambda: local("copy", "-q", "--to", dest.repo, env=server.env()))
            results.setdefault("copy local -> sftp", []).append(total / MIB / secs)
            put, get = _raw(server, 256 * MIB)
            results.setdefault("backend put 256 MiB", []).append(256 / put)
            results.setdefault("backend get 256 MiB", []).append(256 / get)
            shutil.rmtree(server.root)
            os.makedirs(server.root)
    finally:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
    print(f"corpus: {total / MIB:.0f} MiB in {sum(1 for _ in corpus.rglob('*'))} entries")
    print(f"{'step':<24}{'median MiB/s':>14}   runs")
    for step, values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"{step:<24}{statistics.median(values):>14.0f}   {runs}")
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sftp_speed", description=__doc__)
    ap.add_argument("--size", default="300M", help="corpus size (default 300M)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    ap.add_argument("--workdir", type=Path, help="keep the corpus here between runs")
    args = ap.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(args.workdir / "sshd", ignore_errors=True)
        (args.workdir / "sshd").mkdir()
        run(parse_size(args.size), args.reps, args.workdir)
        return
    with tempfile.TemporaryDirectory(prefix="dedupe-sftp-speed-") as tmp:
        (Path(tmp) / "sshd").mkdir()
        run(parse_size(args.size), args.reps, Path(tmp))


if __name__ == "__main__":
    main()
