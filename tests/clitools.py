"""The CLI runner for end-to-end tests: the real CLI in a subprocess against a real repository
(other shared helpers are in tests/support.py, fixtures in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dedupe.repo import indexcache
from tests.support import PASSWORD, digest_tree, open_repo

ENTRY = str(Path(__file__).with_name("cli_entry.py"))
# The CLI with test-only hooks for killing gc, repair or a snapshot at exact points.
KILL_ENTRY = str(Path(__file__).with_name("gc_kill_entry.py"))
ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.out)


class Cli:
    """`cli("snapshot", path)` runs `dedupe --repo REPO snapshot path` with test settings."""

    def __init__(self, repo: str, cache: str, password: str = PASSWORD) -> None:
        self.repo = repo
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPE_")} | {
            "DEDUPE_REPO": repo,
            "DEDUPE_PASSWORD": password,
            "DEDUPE_CACHE_DIR": cache,
            "PYTHONPATH": ROOT,
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, ENTRY, *args]

    def __call__(
        self,
        *args: str,
        input: bytes | None = None,
        env: dict | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> Result:
        proc = subprocess.run(
            self.command(*args),
            input=input,
            capture_output=True,
            env=self.env | (env or {}),
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"dedupe {' '.join(args)} exited {proc.returncode}: {result.err}")
        return result

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), env=self.env, **kwargs)


def initialized_cli(tmp_path: Path, *init_args: str) -> Cli:
    """A Cli on a new repository at tmp_path/repo (cache tmp_path/cache), `init` run."""
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    cli("init", *init_args)
    return cli


CACHED_ENTRY = """\
import sys

import tests.cli_entry  # cheap Argon2id for new keys
from dedupe.repo import indexcache

indexcache.MIN_INDEX_BYTES = 0
indexcache.REWRITE_FILES = 1  # every newer index file is folded into the cache at once
from dedupe.cli.main import main

sys.exit(main())
"""


class CachedCli(Cli):
    """The CLI with the local index cache used for repositories of any size, each newer index
    file folded into the cache at once."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(str(tmp_path / "repo"), str(tmp_path / "cache"))
        self.entry = str(tmp_path / "entry.py")
        with open(self.entry, "w") as f:
            f.write(CACHED_ENTRY)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, self.entry, *args]

    def cache_file(self) -> str:
        repo = open_repo(self.repo)
        return os.path.join(self.env["DEDUPE_CACHE_DIR"], repo.settings.repo_id.hex(), "index")

    def cache_table(self) -> indexcache.CacheTable | None:
        repo = open_repo(self.repo)
        key = indexcache.cache_key(repo.key.enc_key, repo.key.id_key, repo.key.repo_id)
        folder = os.path.dirname(self.cache_file())
        return indexcache.IndexCache(folder, key, repo.key.repo_id).open()


def run_on_pty(cli: Cli, args: list[str], columns: int, rows: int) -> tuple[int, str, str]:
    """Run the CLI with stderr on a real pty of the given size: (exit, stdout, what it drew)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(
        cli.command(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=cli.env,
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer of the pty is gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    return proc.wait(timeout=120), out, shown.decode("utf-8", "replace")


def snapshot_restores_exactly(cli: Cli, src: str | Path, target: Path) -> dict:
    """Snapshot `src` and restore it under `target`: every file comes back bit for bit. The
    snapshot's JSON (for what a test asserts about it)."""
    snap: dict = cli("snapshot", str(src), "--json").json()
    cli("restore", snap["id"], "--target", str(target))
    assert digest_tree(str(target) + str(src)) == digest_tree(str(src))
    return snap
