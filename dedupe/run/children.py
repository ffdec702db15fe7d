"""Running one step of the job: the ordinary `dedupe` command as a child process.

The child is this same program (`sys.argv[0]`, or `python -m dedupe`), started with `-P` so
that nothing is imported from the working folder. Passwords reach it the way the contract lets
any user give them: `DEDUPE_PASSWORD_FILE` / `_COMMAND` naming the profile's own file or command,
or, for a password typed at the terminal, `DEDUPE_PASSWORD_FILE=/dev/fd/N` naming a pipe this
process fills and the child reads once. A password is never put in argv, a log or a message,
and the parent's own `DEDUPE_*PASSWORD*` variables are only passed on where the profile names
no password of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Variables a child must not inherit by accident: each step says which password it uses.
_SCRUBBED_PREFIXES = ("DEDUPE_PASSWORD", "DEDUPE_TO_", "DEDUPE_FROM_", "DEDUPE_NEW_PASSWORD")
_SCRUBBED = ("DEDUPE_REPO", "DEDUPE_PROFILE", "DEDUPE_S3_ENDPOINT")


@dataclass(frozen=True)
class Password:
    """Where one medium's password comes from: a file, a shell command, the parent's own
    `DEDUPE_PASSWORD*` variables (`inherited`), or a secret already in memory (typed)."""

    file: Path | None = None
    command: str | None = None
    inherited: Mapping[str, str] | None = None  # suffix ("_FILE", "_COMMAND", "") -> value
    secret: bytes | None = None


@dataclass(frozen=True)
class ChildResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The child's --json output, or None when it printed none (it failed early)."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None


def program() -> list[str]:
    """How to start this same `dedupe` again, never from the working folder."""
    entry = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if entry and os.path.isfile(entry) and os.path.basename(entry) != "__main__.py":
        return [sys.executable, "-P", entry]
    return [sys.executable, "-P", "-m", "dedupe"]


class Children:
    """Starts the steps' child processes with a clean environment."""

    def __init__(self, env: Mapping[str, str], command: Sequence[str] | None = None) -> None:
        self.command = list(command) if command is not None else program()
        self.env = {
            key: value
            for key, value in env.items()
            if key not in _SCRUBBED and not key.startswith(_SCRUBBED_PREFIXES)
        }

    def run(
        self,
        args: Sequence[str],
        passwords: Mapping[str, Password],
        timeout: float | None = None,
    ) -> ChildResult:
        """Run `dedupe ARGS`; `passwords` maps an environment prefix ("DEDUPE_",
        "DEDUPE_TO_", "DEDUPE_FROM_") to that password. stdin is closed: a step never asks."""
        env = dict(self.env)
        pipes: list[int] = []
        try:
            for prefix, source in passwords.items():
                env.update(_password_env(prefix, source, pipes))
            proc = subprocess.run(
                [*self.command, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                pass_fds=pipes,
                timeout=timeout,
                cwd="/",
                check=False,
            )
        finally:
            for fd in pipes:
                os.close(fd)
        return ChildResult(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )


def _password_env(prefix: str, source: Password, pipes: list[int]) -> dict[str, str]:
    if source.file is not None:
        return {f"{prefix}PASSWORD_FILE": str(source.file)}
    if source.command is not None:
        return {f"{prefix}PASSWORD_COMMAND": source.command}
    if source.secret is not None:
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, source.secret)  # a password fits a pipe's buffer many times
        finally:
            os.close(write_end)
        pipes.append(read_end)
        return {f"{prefix}PASSWORD_FILE": f"/dev/fd/{read_end}"}
    if source.inherited:
        return {f"{prefix}PASSWORD{suffix}": value for suffix, value in source.inherited.items()}
    return {}
