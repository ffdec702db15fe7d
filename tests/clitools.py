"""Helpers for end-to-end tests: run the real CLI in a subprocess against a real repository."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENTRY = str(Path(__file__).with_name("cli_entry.py"))
ROOT = str(Path(__file__).resolve().parent.parent)
PASSWORD = "correct horse battery staple"


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


def repo_size(repo: str) -> int:
    total = 0
    for folder, _dirs, files in os.walk(repo):
        for name in files:
            total += os.path.getsize(os.path.join(folder, name))
    return total


def all_stored_bytes(repo: str) -> bytes:
    chunks = []
    for folder, _dirs, files in os.walk(repo):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                chunks.append(f.read())
    return b"".join(chunks)


def digest_tree(root: str) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root` (to compare restores)."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def files_under(folder: str) -> set[str]:
    """Every file below `folder` (none if it does not exist)."""
    return {os.path.join(d, f) for d, _s, files in os.walk(folder) for f in files}


def wait_for_new_file(
    folder: str, proc: subprocess.Popen, before: set[str], timeout: float = 60
) -> bool:
    """Poll until a file not in `before` appears below `folder`: True then, False if `proc`
    ended or the time ran out first. Kill tests use it to strike mid-write on any machine."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if files_under(folder) - before:
            return True
        time.sleep(0.002)
    return False
