"""The command table (dedupe.cli.registry) matches the modules, and a launch imports one."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from dedupe.cli import main as cli_main
from dedupe.cli.registry import COMMANDS, chosen_module


def test_table_names_every_command_of_every_module() -> None:
    derived: dict[str, str] = {}
    for module in cli_main.command_modules():
        parser = argparse.ArgumentParser()
        parser.register("action", "parsers", cli_main._Commands)
        sub = parser.add_subparsers()
        module.register(sub, argparse.ArgumentParser(add_help=False))
        for name in sub.choices:
            derived[name] = module.__name__.rsplit(".", 1)[1]
    assert COMMANDS == derived, f"update dedupe/cli/registry.py COMMANDS to {derived!r}"


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["snapshot", "/srv"], "cmd_snapshot"),
        (["backup", "/srv"], "cmd_snapshot"),
        (["--repo", "gc", "ls", "latest"], "cmd_read"),  # a folder named like a command
        (["-r", "/r", "--json", "forget", "--keep-last", "1"], "cmd_forget"),
        (["-qr", "restore", "snapshots"], "cmd_read"),
        (["-q", "-v", "--repo=/r", "gc"], "cmd_gc"),
        (["-r/r", "release", "abc"], "cmd_hold"),
        (["--s3-endpoint", "http://x", "check"], "cmd_check"),
        ([], None),
        (["--help"], None),
        (["--version", "gc"], None),
        (["snapshto"], None),  # misspelt: the full parser suggests the nearest
        (["-x", "gc"], None),
    ],
)
def test_chosen_module(argv: list[str], module: str | None) -> None:
    assert chosen_module(argv) == module


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from dedupe.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(m for m in sys.modules if m.startswith('dedupe.')), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    return set(proc.stderr.split("\n")[-2].split())


def test_a_launch_imports_only_its_command() -> None:
    loaded = _modules_after(["journal", "--help"])
    assert "dedupe.cli.cmd_journal" in loaded
    assert not {"dedupe.cli.cmd_snapshot", "dedupe.backup.archiver", "dedupe.ui.app"} & loaded


def test_a_misspelt_command_still_gets_every_command_and_a_suggestion() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dedupe", "snapshto"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "snapshot" in proc.stderr
