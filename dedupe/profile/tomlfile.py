"""Reading a small TOML settings file (a profile, a policy file) with messages a user can act on.

`read_toml_file` returns the file's table or raises `UsageError` (exit 2) naming the file and, where
it can, the line: the file cannot be read, is not UTF-8, or is not TOML. `read_toml_text` also
returns the decoded text, so that a later check can point at the line of a key (`key_lines`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from dedupe.errors import UsageError

_ARRAY_HEADER = re.compile(r"\s*\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")
_TABLE_HEADER = re.compile(r"\s*\[\s*([A-Za-z0-9_-]+)\s*\]")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")


def read_toml_file(path: Path, what: str) -> dict[str, Any]:
    """The table of a TOML file, or UsageError (exit 2) naming `what` and the file: it cannot
    be read, is not UTF-8 (the line of the first bad byte), or is not TOML. `what` is e.g.
    "policy file" or "profile"."""
    return read_toml_text(path, what)[1]


def read_toml_text(path: Path, what: str) -> tuple[str, dict[str, Any]]:
    """`read_toml_file`, also returning the file's text."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UsageError(
            f"{what} {path} is not UTF-8 text (line {line}): save it as UTF-8"
        ) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{what} {path} is not valid TOML: {error}") from None


def key_lines(text: str) -> dict[tuple[str, int, str], int]:
    """Best effort: the line number of each plainly written `key = ...`, by (table, index, key).

    The top level is table "", a `[name]` table has index 0 and the n-th `[[name]]` table index n
    (from 0). Keys inside inline tables, dotted keys and quoted keys are not found; a caller that
    finds no line leaves it out of its message (tomllib gives no line for a parsed value).
    """
    lines: dict[tuple[str, int, str], int] = {}
    counts: dict[str, int] = {}
    table, index = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if match := _ARRAY_HEADER.match(line):
            table = match.group(1)
            index = counts[table] = counts.get(table, -1) + 1
        elif match := _TABLE_HEADER.match(line):
            table, index = match.group(1), 0
        elif match := _KEY.match(line):
            lines.setdefault((table, index, match.group(1)), number)
    return lines
