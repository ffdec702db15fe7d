"""How to drive each backup tool, and how to time one command and read its peak RSS.

Every adapter gets a private workspace (repository, caches, config) so runs never share state,
and its caches survive from the first night to the second, as a nightly job's would. All
repositories are encrypted and compress with zstd level 3 (restic: ``auto``, its zstd-3 default).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD = "correct horse battery staple"
TIME_BIN = "/usr/bin/time"
# Used when GNU time is missing: the wrapper's only child is the command, so its
# RUSAGE_CHILDREN peak is the command's own.
_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(f'Maximum resident set size (kbytes): {peak}')\n"
    "sys.exit(rc)\n"
)


@dataclass
class Measured:
    """One timed command (or a short sequence of them, summed)."""

    wall_s: float = 0.0
    max_rss_kib: int = 0
    rc: int = 0
    stdout: str = ""
    stderr_tail: str = ""

    def add(self, other: Measured) -> None:
        """Fold a later command of the same step into this one (times add, peaks max)."""
        self.wall_s += other.wall_s
        self.max_rss_kib = max(self.max_rss_kib, other.max_rss_kib)
        self.rc = self.rc or other.rc
        self.stdout += other.stdout
        self.stderr_tail = other.stderr_tail or self.stderr_tail


def _descendants(pid: int) -> list[int]:
    """All processes below `pid` (Linux /proc children lists; empty where unavailable)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")), 0)
    except (OSError, ValueError):
        return 0


class _TreeRss:
    """Samples the summed RSS of a command's whole process tree. rusage only reports the
    largest single process, which would hide a tool's helper processes (dedupe stores large
    files in one); the sum is what the machine must hold."""

    INTERVAL = 0.05

    def __init__(self, root_pid: int) -> None:
        self.peak_kib = 0
        self._root = root_pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            # Below the time wrapper: the command and everything it started.
            total = sum(_rss_kib(p) for p in _descendants(self._root))
            self.peak_kib = max(self.peak_kib, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kib


def run_measured(
    argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 3600
) -> Measured:
    """Run ``argv`` under GNU time (or a rusage wrapper); wall time from our own clock. The
    peak RSS is the larger of rusage's (one process, exact) and the sampled sum over the
    command's process tree (all processes, sampled every 50 ms)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        if os.access(TIME_BIN, os.X_OK):
            full = [TIME_BIN, "-v", "-o", rss_file.name, *argv]
        else:
            full = [sys.executable, "-c", _RSS_WRAPPER, rss_file.name, *argv]
        started = time.perf_counter()
        proc = subprocess.Popen(
            full,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = _TreeRss(proc.pid)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        finally:
            tree_peak = sampler.stop()
        wall = time.perf_counter() - started
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", rss_file.read())
    return Measured(
        wall,
        max(int(match.group(1)) if match else 0, tree_peak),
        proc.returncode,
        stdout,
        "\n".join(stderr.strip().splitlines()[-8:]),
    )


def dir_usage(path: Path) -> tuple[int, int]:
    """(disk usage as ``du`` counts it, apparent bytes) of everything under ``path``."""
    used = apparent = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            used += st.st_blocks * 512
            apparent += st.st_size
    return used, apparent


def ensure_installed(binary: str, package: str, notes: list[str]) -> bool:
    """Install a Debian package if ``binary`` is missing; a failure becomes a note, not a crash."""
    if shutil.which(binary) or os.access(binary, os.X_OK):
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        notes.append(f"{binary} missing and cannot apt-get install {package} (not root)")
        return False
    try:
        # A timeout, because apt-get waits forever on a lock another apt holds.
        proc = subprocess.run(
            ["apt-get", "install", "-y", package],
            capture_output=True,
            text=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            check=False,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        notes.append(f"apt-get install {package} failed: {exc}")
        return False
    if proc.returncode != 0 or not (shutil.which(binary) or os.access(binary, os.X_OK)):
        notes.append(f"apt-get install {package} failed: {proc.stderr.strip()[-200:]}")
        return False
    notes.append(f"installed {package} with apt-get")
    return True


@dataclass
class Workspace:
    """A tool's private directories for one repetition."""

    root: Path
    repo: Path = field(init=False)
    cache: Path = field(init=False)
    restore: Path = field(init=False)

    def __post_init__(self) -> None:
        self.repo = self.root / "repo"
        self.cache = self.root / "cache"
        self.restore = self.root / "restore"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.restore.mkdir(parents=True, exist_ok=True)


class Tool:
    """Base adapter: each method returns the argv lists that make up one benchmark step."""

    name = ""

    def version(self) -> str:
        """The tool's version string, for the JSON record."""
        return ""

    def env(self, ws: Workspace) -> dict[str, str]:
        """Environment with the password and private cache dirs; HOME too, so nothing leaks."""
        return {
            **os.environ,
            "HOME": str(ws.root / "home"),
            "XDG_CACHE_HOME": str(ws.cache / "xdg"),
        }

    def init(self, ws: Workspace) -> list[list[str]]:
        raise NotImplementedError

    def snapshot(self, ws: Workspace, src: Path, label: str) -> list[list[str]]:
        raise NotImplementedError

    def restore(self, ws: Workspace, label: str) -> list[list[str]]:
        """Commands run with cwd = the (empty) restore dir."""
        raise NotImplementedError

    def restore_file(self, ws: Workspace, label: str, path: Path) -> list[list[str]]:
        """Restore only the file at `path` (absolute, as backed up); cwd = the restore dir."""
        raise NotImplementedError

    def forget_gc(self, ws: Workspace) -> list[list[str]]:
        raise NotImplementedError


class Restic(Tool):
    """restic with a v2 repository (compression) and a private --cache-dir."""

    name = "restic"

    def version(self) -> str:
        return subprocess.run(
            ["restic", "version"], capture_output=True, text=True, check=False
        ).stdout.strip()

    def env(self, ws: Workspace) -> dict[str, str]:
        return {**super().env(ws), "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": str(ws.repo)}

    def _base(self, ws: Workspace) -> list[str]:
        return ["restic", "--cache-dir", str(ws.cache / "restic"), "--compression", "auto"]

    def init(self, ws: Workspace) -> list[list[str]]:
        return [[*self._base(ws), "init", "--repository-version", "2"]]

    def snapshot(self, ws: Workspace, src: Path, label: str) -> list[list[str]]:
        return [[*self._base(ws), "backup", "--host", "bench", "--tag", label, str(src)]]

    def restore(self, ws: Workspace, label: str) -> list[list[str]]:
        return [[*self._base(ws), "restore", "latest", "--target", str(ws.restore)]]

    def restore_file(self, ws: Workspace, label: str, path: Path) -> list[list[str]]:
        return [
            [
                *self._base(ws),
                "restore",
                "latest",
                "--target",
                str(ws.restore),
                "--include",
                str(path),
            ]
        ]

    def forget_gc(self, ws: Workspace) -> list[list[str]]:
        return [[*self._base(ws), "forget", "--keep-last", "1", "--prune"]]


class Borg(Tool):
    """BorgBackup 1.2 with repokey-blake2 and zstd,3; BORG_BASE_DIR holds keys, cache, config."""

    name = "borg"

    def version(self) -> str:
        return subprocess.run(
            ["borg", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()

    def env(self, ws: Workspace) -> dict[str, str]:
        return {
            **super().env(ws),
            "BORG_PASSPHRASE": PASSWORD,
            "BORG_BASE_DIR": str(ws.cache / "borg-base"),
            "BORG_CACHE_DIR": str(ws.cache / "borg-cache"),
            "BORG_CONFIG_DIR": str(ws.cache / "borg-config"),
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }

    def init(self, ws: Workspace) -> list[list[str]]:
        return [["borg", "init", "-e", "repokey-blake2", str(ws.repo)]]

    def snapshot(self, ws: Workspace, src: Path, label: str) -> list[list[str]]:
        return [["borg", "create", "--compression", "zstd,3", f"{ws.repo}::{label}", str(src)]]

    def restore(self, ws: Workspace, label: str) -> list[list[str]]:
        return [["borg", "extract", f"{ws.repo}::{label}"]]

    def restore_file(self, ws: Workspace, label: str, path: Path) -> list[list[str]]:
        return [["borg", "extract", f"{ws.repo}::{label}", str(path).lstrip("/")]]

    def forget_gc(self, ws: Workspace) -> list[list[str]]:
        return [
            ["borg", "prune", "--keep-last", "1", str(ws.repo)],
            ["borg", "compact", str(ws.repo)],
        ]


class Dedupe(Tool):
    """dedupe through its documented CLI contract (DEDUPE_REPO, DEDUPE_PASSWORD, --json)."""

    name = "dedupe"

    def __init__(self) -> None:
        # Always this checkout's code, started as `python -m dedupe` (PYTHONPATH is set in
        # env()): no version-manager shim in front of it (pyenv's costs ~0.15 s per call, which
        # a static restic binary does not pay), and it works in a fresh clone too.
        self.source_root = str(Path(__file__).resolve().parents[1])
        self.cmd = [sys.executable, "-m", "dedupe"]

    def version(self) -> str:
        proc = subprocess.run([*self.cmd, "--version"], capture_output=True, text=True, check=False)
        return (proc.stdout or proc.stderr).strip()[:200]

    def env(self, ws: Workspace) -> dict[str, str]:
        env = {
            **super().env(ws),
            "DEDUPE_REPO": str(ws.repo),
            "DEDUPE_PASSWORD": PASSWORD,
            "DEDUPE_CACHE_DIR": str(ws.cache / "dedupe"),
        }
        if self.source_root:
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [self.source_root, env.get("PYTHONPATH")])
            )
        return env

    def init(self, ws: Workspace) -> list[list[str]]:
        return [[*self.cmd, "init"]]

    def snapshot(self, ws: Workspace, src: Path, label: str) -> list[list[str]]:
        return [[*self.cmd, "snapshot", str(src), "--tag", label, "--json"]]

    def restore(self, ws: Workspace, label: str) -> list[list[str]]:
        return [[*self.cmd, "restore", "latest", "--target", str(ws.restore)]]

    def restore_file(self, ws: Workspace, label: str, path: Path) -> list[list[str]]:
        return [
            [*self.cmd, "restore", "latest", "--target", str(ws.restore), "--include", str(path)]
        ]

    def forget_gc(self, ws: Workspace) -> list[list[str]]:
        return [[*self.cmd, "forget", "--keep-last", "1", "--gc"]]


ALL_TOOLS: dict[str, type[Tool]] = {"dedupe": Dedupe, "restic": Restic, "borg": Borg}
PACKAGES = {"restic": ("restic", "restic"), "borg": ("borg", "borgbackup")}


def probe(tool: Tool, scratch: Path) -> str | None:
    """None if ``tool`` can init a repository here, else the reason to skip it."""
    ws = Workspace(scratch / f"probe-{tool.name}")
    try:
        for argv in tool.init(ws):
            m = run_measured(argv, tool.env(ws), timeout=120)
            if m.rc != 0:
                return f"`{' '.join(argv[:3])}` exited {m.rc}: {m.stderr_tail[-300:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{tool.name} init failed: {exc}"
    finally:
        shutil.rmtree(ws.root, ignore_errors=True)
    return None
