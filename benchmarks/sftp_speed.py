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
import resource
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


CPU: dict[str, list[float]] = {}  # client CPU seconds per step (this process and its children)


def _cpu() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(step: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Wall seconds of `step`; its CPU seconds (dedupe, and ssh: the client side) go to CPU."""
    name = str(kwargs.pop("cpu_as", ""))
    cpu, started = _cpu(), time.perf_counter()
    step(*args, **kwargs)
    wall = time.perf_counter() - started
    if name:
        CPU.setdefault(name, []).append(_cpu() - cpu)
    return wall


def _cli(server: SFTPServer, work: Path, name: str) -> Cli:
    cli = Cli(server.url(f"{server.root}/{name}-{uuid.uuid4().hex[:8]}"), str(work / "cache"))
    cli.env |= server.env()
    return cli


def _raw(server: SFTPServer, size: int) -> tuple[float, float, float]:
    """Seconds for one put and one get of `size` random bytes through the backend alone, and
    for 200 puts and gets of 1 KiB objects (the latency of small requests)."""
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
        put = _timed(storage.put, "data/ab/blob", data, cpu_as="backend put 256 MiB")
        got: list[bytes] = []
        get = _timed(lambda: got.append(storage.get("data/ab/blob")), cpu_as="backend get 256 MiB")
        assert got[0] == data, "the object came back different"
        small = os.urandom(1024)

        def small_ops() -> None:
            for i in range(200):
                storage.put(f"snapshots/s{i}", small)
                storage.get(f"snapshots/s{i}")

        return put, get, _timed(small_ops, cpu_as="1 KiB put+get /s")
    finally:
        storage.close()


def run(size: int, reps: int, work: Path, backend_only: bool) -> dict[str, list[float]]:
    corpus = work / "corpus"
    if not backend_only:
        generate(corpus, size)
    total = sum(e.stat().st_size for e in corpus.rglob("*") if e.is_file())
    server = start_sftp_server(str(work / "sshd"))
    results: dict[str, list[float]] = {}
    try:
        local = Cli(str(work / "local"), str(work / "cache"))
        if not backend_only and not (work / "local").exists():
            local("init", "-q")
            local("snapshot", "-q", str(corpus))
        for rep in range(reps):
            if backend_only:
                put, get, small = _raw(server, 256 * MIB)
                results.setdefault("backend put 256 MiB", []).append(256 / put)
                results.setdefault("backend get 256 MiB", []).append(256 / get)
                results.setdefault("1 KiB put+get /s", []).append(200 / small)
                continue
            remote = _cli(server, work, "snap")
            remote("init", "-q")
            secs = _timed(remote, "snapshot", "-q", str(corpus), cpu_as="snapshot -> sftp")
            results.setdefault("snapshot -> sftp", []).append(total / MIB / secs)
            target = work / f"restore-{rep}"
            secs = _timed(
                remote, "restore", "-q", "latest", "--target", str(target), cpu_as="restore <- sftp"
            )
            results.setdefault("restore <- sftp", []).append(total / MIB / secs)
            shutil.rmtree(target)
            dest = _cli(server, work, "copy")
            dest("init", "-q")
            secs = _timed(
                local,
                "copy",
                "-q",
                "--to",
                dest.repo,
                env=server.env(),
                cpu_as="copy local -> sftp",
            )
            results.setdefault("copy local -> sftp", []).append(total / MIB / secs)
            put, get, small = _raw(server, 256 * MIB)
            results.setdefault("backend put 256 MiB", []).append(256 / put)
            results.setdefault("backend get 256 MiB", []).append(256 / get)
            results.setdefault("1 KiB put+get /s", []).append(200 / small)
            shutil.rmtree(server.root)
            os.makedirs(server.root)
    finally:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
    if not backend_only:
        print(f"corpus: {total / MIB:.0f} MiB in {sum(1 for _ in corpus.rglob('*'))} entries")
    print(f"{'step':<24}{'median':>8}  {'client CPU s':>12}   runs (MiB/s; ops/s for 1 KiB)")
    for step, values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        cpu = statistics.median(CPU.get(step, [0.0]))
        print(f"{step:<24}{statistics.median(values):>8.0f}  {cpu:>12.1f}   {runs}")
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sftp_speed", description=__doc__)
    ap.add_argument("--size", default="300M", help="corpus size (default 300M)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    ap.add_argument("--workdir", type=Path, help="keep the corpus here between runs")
    ap.add_argument("--backend-only", action="store_true", help="only the backend steps")
    args = ap.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(args.workdir / "sshd", ignore_errors=True)
        (args.workdir / "sshd").mkdir()
        run(parse_size(args.size), args.reps, args.workdir, args.backend_only)
        return
    with tempfile.TemporaryDirectory(prefix="dedupe-sftp-speed-") as tmp:
        (Path(tmp) / "sshd").mkdir()
        run(parse_size(args.size), args.reps, Path(tmp), args.backend_only)


if __name__ == "__main__":
    main()
