"""Which `dedupe.cli.cmd_*` module defines each command, so a launch imports only its own.

Why: every command module imports its subsystem (the archiver, gc, mount, the web page, charts),
and importing all of them cost about a quarter of a second of CPU on every launch, before any
work: a third of a small `forget --gc`, and minutes over the test suite's thousands of launches.
`main` looks at the command line for the command's name and builds the parser with that one
module. Anything it does not recognise (no command, `--help` or `--version` before it, a
misspelt name) builds the full parser, which lists every command and suggests the nearest.

The table is checked against the modules themselves by tests/test_cli_registry.py, so a new
command that is missing here still works (through the full parser) and fails that test.
"""

from __future__ import annotations

from collections.abc import Iterator

COMMANDS: dict[str, str] = {
    "alert": "cmd_alert",
    "archive": "cmd_archive",
    "check": "cmd_check",
    "completion": "cmd_completion",
    "copy": "cmd_copy",
    "find": "cmd_find",
    "forget": "cmd_forget",
    "gc": "cmd_gc",
    "hold": "cmd_hold",
    "release": "cmd_hold",
    "journal": "cmd_journal",
    "mount": "cmd_mount",
    "plan": "cmd_plan",
    "cat": "cmd_read",
    "diff": "cmd_read",
    "ls": "cmd_read",
    "snapshots": "cmd_read",
    "repair": "cmd_repair",
    "init": "cmd_repo",
    "key": "cmd_repo",
    "unlock": "cmd_repo",
    "restore": "cmd_restore",
    "retire": "cmd_retire",
    "run": "cmd_run",
    "schedule": "cmd_schedule",
    "backup": "cmd_snapshot",
    "snapshot": "cmd_snapshot",
    "stats": "cmd_stats",
    "status": "cmd_status",
    "ui": "cmd_ui",
}

# Global options that take a value as the next word (see main._add_common).
_WITH_VALUE = {"--repo", "-r", "--s3-endpoint"}
# Short global flags that may be bundled with -r ("-qr URL").
_SHORT_FLAGS = set("qv")


def chosen_module(argv: list[str]) -> str | None:
    """The module of the command `argv` names, or None when the full parser is wanted."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--version", "--"):
            return None
        if word in _WITH_VALUE:
            next(words, None)
            continue
        if word.startswith("--"):
            continue  # a flag, or --repo=URL
        if word.startswith("-") and len(word) > 1:
            if not _short_options(word[1:], words):
                return None  # not a global option: let the full parser explain
            continue
        return COMMANDS.get(word)
    return None


def _short_options(letters: str, words: Iterator[str]) -> bool:
    """Walk bundled short global options ("-q", "-qv", "-qr URL", "-rURL"); False if one is
    not a global option. An "r" takes the rest of the word, or else the next word, as its URL."""
    for at, letter in enumerate(letters):
        if letter == "r":
            if at == len(letters) - 1:
                next(words, None)
            return True
        if letter not in _SHORT_FLAGS:
            return False
    return True
