"""Where passwords come from: file, command, variable, terminal prompt, in that order.

A password never appears in argv, a log or an error message. Command output is taken as is,
minus one trailing newline, as with files.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Callable

from dedupe.errors import WrongPassword


def _strip_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def from_environment(prefix: str = "DEDUPE_", what: str = "repository") -> bytes | None:
    """The password from PREFIX{PASSWORD_FILE,PASSWORD_COMMAND,PASSWORD}, or None."""
    path = os.environ.get(f"{prefix}PASSWORD_FILE")
    if path:
        return _read_file(path, f"the password file named by {prefix}PASSWORD_FILE")
    command = os.environ.get(f"{prefix}PASSWORD_COMMAND")
    if command:
        return _run_command(command, f"{prefix}PASSWORD_COMMAND")
    value = os.environ.get(f"{prefix}PASSWORD")
    if value is not None:
        return os.fsencode(value)
    return None


def from_settings(
    password_file: str | os.PathLike[str] | None, password_command: str | None, where: str
) -> bytes | None:
    """The password a profile names for `where` (e.g. "[repository]" or "[[offsite]] 'cloud'"):
    its password-file, else its password-command (run by the shell), else None."""
    if password_file is not None:
        return _read_file(password_file, f"the password-file of {where}")
    if password_command is not None:
        return _run_command(password_command, f"the password-command of {where}")
    return None


def _read_file(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return _strip_newline(f.read())
    except OSError as exc:
        raise WrongPassword(f"cannot read {what}: {exc.strerror}") from None


def _run_command(command: str, what: str) -> bytes:
    try:
        result = subprocess.run(
            command, shell=True, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        raise WrongPassword(f"{what} could not run: {exc.strerror}") from None
    if result.returncode != 0:
        raise WrongPassword(f"{what} failed with exit code {result.returncode}")
    return _strip_newline(result.stdout)


def source(prefix: str = "DEDUPE_", what: str = "repository") -> Callable[[], bytes]:
    """A callable that finds the password when (and only when) it is needed."""

    def get() -> bytes:
        found = from_environment(prefix, what)
        if found is not None:
            return found
        if sys.stdin.isatty():
            return os.fsencode(getpass.getpass(f"password for the {what}: "))
        raise WrongPassword(
            f"no password: set {prefix}PASSWORD_FILE, {prefix}PASSWORD_COMMAND or "
            f"{prefix}PASSWORD, or run on a terminal"
        )

    return get


def new_password(env: str, what: str) -> bytes:
    """A new password: from `env`, else asked twice on the terminal."""
    value = os.environ.get(env)
    if value is not None:
        if not value:
            raise WrongPassword("the new password is empty")
        return os.fsencode(value)
    if not sys.stdin.isatty():
        raise WrongPassword(f"no new password: set {env} or run on a terminal")
    first = getpass.getpass(f"new password for the {what}: ")
    second = getpass.getpass("repeat the new password: ")
    if first != second:
        raise WrongPassword("the passwords do not match")
    if not first:
        raise WrongPassword("the new password is empty")
    return os.fsencode(first)
