"""The command line as a user meets it: help that teaches, no abbreviations, quiet success,
verbose decisions, init that refuses occupied folders, progress bars on a real terminal."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from dedupe.cli.context import ProgressBar
from dedupe.cli.main import COMMAND_GROUPS, build_parser
from tests.clitools import Cli, initialized_cli, run_on_pty

MY_COMMANDS = (
    "init key unlock snapshot snapshots ls cat diff restore find mount stats repair schedule "
    "alert".split()
)


def _help(cli: Cli, *args: str) -> str:
    return cli(*args, "--help").text


def test_top_help_lists_commands_in_order_with_passwords_and_profile(tmp_path):
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    text = _help(cli)
    ordered = [name for _title, names in COMMAND_GROUPS for name in names]
    positions = [text.index(f"\n  {name} ") for name in ordered]
    assert positions == sorted(positions), "commands out of the documented order"
    assert text.index("\n  init ") < text.index("\n  snapshot ") < text.index("\n  forget ")
    for variable in ("DEDUPE_PASSWORD_FILE", "DEDUPE_PASSWORD_COMMAND", "DEDUPE_PASSWORD "):
        assert variable in text
    search = text[text.index("The profile") :]
    order = [
        "--profile FILE",
        "$DEDUPE_PROFILE",
        "./dedupe.toml",
        "$XDG_CONFIG_HOME",
        "/etc/dedupe",
    ]
    assert [search.index(item) for item in order] == sorted(search.index(i) for i in order)
    # every registered command is listed, even one that no group names yet
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.summaries:
        assert f"\n  {name}" in text


@pytest.mark.parametrize("command", MY_COMMANDS)
def test_each_command_has_a_description_and_an_example(tmp_path, command):
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    text = _help(cli, command)
    description = text.split("\n\n")[1]
    assert not description.startswith(("positional", "options")), text
    assert "example" in text.lower() and f"dedupe {command}" in text.split("example", 1)[1]


def test_abbreviations_are_refused_with_the_full_name_suggested(tmp_path):
    cli = initialized_cli(tmp_path)
    result = cli("forget", "--keep-m", "3", "--dry-run", check=False)
    assert result.code == 2
    assert "unrecognized arguments: --keep-m" in result.err
    assert "did you mean --keep-monthly" in result.err
    result = cli("--rep", str(tmp_path / "repo"), "snapshots", check=False)
    assert result.code == 2
    result = cli("snapshots", "--ho", "x", check=False)  # --host, abbreviated
    assert result.code == 2 and "--host" in result.err


def test_a_mistyped_command_gets_did_you_mean(tmp_path):
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    result = cli("snapshto", check=False)
    assert result.code == 2
    assert "did you mean 'snapshot'" in result.err
    result = cli("key", "pass", check=False)
    assert result.code == 2 and "did you mean 'passwd'" in result.err


def test_target_and_snap_have_help(tmp_path):
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    restore = _help(cli, "restore")
    assert "--target DIR" in restore and "the folder to restore into" in restore
    assert "latest" in _help(cli, "ls").split("SNAP", 2)[2]


# --- quiet and verbose -----------------------------------------------------------------------


def test_quiet_prints_nothing_on_success(tmp_path):
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    result = cli("init", "-q")
    assert (result.out, result.err) == (b"", "")
    data = tmp_path / "data"
    data.mkdir()
    (data / "letter.txt").write_text("dear patient")
    for args in (("snapshot", "-q", str(data)), ("-q", "snapshot", str(data)), ("unlock", "-q")):
        result = cli(*args)
        assert (result.out, result.err) == (b"", ""), args
    # a listing still lists (that is what was asked for), without the count line
    listing = cli("snapshots", "-q").text.splitlines()
    assert len(listing) == 3 and listing[0].startswith("ID")
    assert str(data / "letter.txt") in cli("ls", "-q", "latest").text


def test_quiet_still_reports_a_failure(tmp_path):
    cli = initialized_cli(tmp_path)
    result = cli("snapshot", "-q", str(tmp_path / "missing"), check=False)
    assert result.code == 1 and "nothing was backed up" in result.err


def test_verbose_lists_each_files_decision(tmp_path):
    cli = initialized_cli(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("same.txt", "edited.txt", "gone.txt"):
        (data / name).write_text(name)
    first = cli("snapshot", "-v", str(data))
    assert f"new      {data / 'same.txt'}" in first.err
    (data / "edited.txt").write_text("edited, and longer than before")
    (data / "gone.txt").unlink()
    (data / "added.txt").write_text("added")
    second = cli("snapshot", "--verbose", str(data))
    lines = second.err.splitlines()
    assert f"changed  {data / 'edited.txt'}" in lines
    assert f"removed  {data / 'gone.txt'}" in lines
    assert f"new      {data / 'added.txt'}" in lines
    assert not any(str(data / "same.txt") in line for line in lines)
    assert any(line.startswith("1 new, ") and "1 removed since snapshot" in line for line in lines)
    assert second.text.startswith("snapshot ")  # stdout keeps only the id line


# --- init ------------------------------------------------------------------------------------


def test_init_refuses_a_folder_that_holds_files(tmp_path):
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "letter.docx").write_bytes(b"x")
    cli = Cli(str(documents), str(tmp_path / "cache"))
    result = cli("init", check=False)
    assert result.code == 2
    assert "is not empty" in result.err and "letter.docx" in result.err
    assert sorted(os.listdir(documents)) == ["letter.docx"]  # nothing was created
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".git").mkdir()
    assert Cli(str(hidden), str(tmp_path / "cache"))("init", check=False).code == 2
    # --force: the office means it; the letter stays where it is.
    cli("init", "--force")
    assert (documents / "letter.docx").read_bytes() == b"x"
    assert "config" in os.listdir(documents)


def test_init_accepts_an_empty_folder_and_a_drive_with_lost_and_found(tmp_path):
    drive = tmp_path / "drive"
    (drive / "lost+found").mkdir(parents=True)
    Cli(str(drive), str(tmp_path / "cache"))("init")
    assert (drive / "config").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    Cli(str(empty), str(tmp_path / "cache"))("init")


def test_init_over_a_repository_is_still_refused_as_such(tmp_path):
    cli = initialized_cli(tmp_path)
    result = cli("init", check=False)
    assert result.code == 2 and "already exists" in result.err


# --- broken pipes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("snapshots",),
        ("--json", "snapshots"),
        ("ls", "latest"),
        ("find", "*.txt"),
        ("diff", "latest", "latest"),
        ("stats",),
        ("--help",),
        ("ls", "--help"),
        ("--version",),
    ],
)
def test_a_reader_that_goes_away_is_a_quiet_exit_0(tmp_path, args):
    # Buffered stdout (no PYTHONUNBUFFERED, as a user's shell has it) into a pipe whose reader
    # has already gone: the flush at the end used to fail with exit 120 "Exception ignored".
    cli = initialized_cli(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    cli("snapshot", str(data))
    env = {k: v for k, v in cli.env.items() if k != "PYTHONUNBUFFERED"}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(  # as the installed `dedupe` runs (the test entry hid the bug)
            [sys.executable, "-m", "dedupe", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write_end)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Broken pipe" not in err and "Exception ignored" not in err


# --- progress on a terminal ------------------------------------------------------------------


def _run_on_pty(cli: Cli, args: list[str], columns: int, rows: int) -> tuple[int, str]:
    """(exit code, what it showed on a pty of the given size)."""
    code, _out, shown = run_on_pty(cli, args, columns, rows)
    return code, shown


@pytest.mark.parametrize("columns, rows", [(0, 0), (0, 24), (120, 40)])
def test_snapshot_progress_shows_on_any_terminal_in_decimal_units(tmp_path, columns, rows):
    # A pty that reports 0 columns (and 0 rows: `docker exec -t`) showed no bar at all.
    cli = initialized_cli(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(50):
        (data / f"f{i:03d}.bin").write_bytes(os.urandom(2048) * (1 + i % 7))
    (data / "big.bin").write_bytes(os.urandom(1 << 20) * 4)
    code, shown = _run_on_pty(cli, ["snapshot", str(data)], columns, rows)
    assert code == 0, shown
    assert "snapshot: " in shown, shown
    assert "files 51" in shown and " read" in shown  # the last frame: every file done
    assert " MB" in shown and "MiB" not in shown  # one unit system: dedupe.units


def test_a_bar_with_a_total_shows_percent_count_rate_and_eta():
    files = ProgressBar(total=400, desc="snapshot", unit="files", note="1.5 MB read")
    files.update(100)
    shown = str(files)
    files.close()
    assert shown.startswith("snapshot:  25% ")
    assert "files 100/400" in shown and "files/s" in shown and "ETA " in shown
    assert shown.endswith(", 1.5 MB read")
    data = ProgressBar(total=3 * 10**9, desc="copy", unit="B")
    data.update(1_500_000_000)
    shown = str(data)
    data.close()
    assert " 50% " in shown and "1.5 GB of 3 GB" in shown and "/s, ETA" in shown
    unknown = ProgressBar(total=None, desc="snapshot", unit="B")
    unknown.update(5_000_000)
    shown = str(unknown)
    unknown.close()
    assert shown.startswith("snapshot: 5 MB, ") and "%" not in shown


def test_no_bar_with_quiet_even_on_a_terminal(tmp_path):
    cli = initialized_cli(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(1 << 20))
    code, shown = _run_on_pty(cli, ["snapshot", "-q", str(data)], 80, 24)
    assert code == 0 and shown == ""


# --- the man page and shell completion -------------------------------------------------------

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def _make_man() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_man", TOOLS / "make-man.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_man_page_has_every_command_and_renders_cleanly(tmp_path):
    page = _make_man().man_page()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.summaries:
        assert f".SS {name.replace('-', chr(92) + '-')}\n" in page
    for section in ("NAME", "SYNOPSIS", "GLOBAL OPTIONS", "ENVIRONMENT AND FILES", "EXIT STATUS"):
        assert f".SH {section}\n" in page
    assert "DEDUPE_PASSWORD_FILE" in page
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    source = tmp_path / "dedupe.1"
    source.write_text(page)
    rendered = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", str(source)], capture_output=True, text=True
    )
    assert rendered.returncode == 0 and rendered.stderr == ""
    assert "dedupe snapshot /srv/practice" in rendered.stdout


def _complete(script: Path, *words: str) -> list[str]:
    """What bash offers after `words` (the last one is being typed), with the script loaded."""
    quoted = " ".join(shlex.quote(w) for w in words)
    program = (
        f"source {shlex.quote(str(script))}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
        '_dedupe; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return sorted(line for line in done.stdout.splitlines() if line)


def test_bash_completion_offers_commands_options_and_choices(tmp_path):
    script = tmp_path / "dedupe.bash-completion"
    script.write_text(_make_man().completion())
    assert _complete(script, "dedupe", "sn") == ["snapshot", "snapshots"]
    assert _complete(script, "dedupe", "--repo", "/srv/backup/repo", "rest") == ["restore"]
    assert "--exclude" in _complete(script, "dedupe", "snapshot", "--ex")
    assert _complete(script, "dedupe", "key", "") == ["export", "import", "passwd"]
    assert _complete(script, "dedupe", "schedule", "in") == ["install"]
    assert _complete(script, "dedupe", "restore", "--target", "") == []  # a folder: bash's own
    assert "--keep-monthly" in _complete(script, "dedupe", "forget", "--keep-m")


def test_a_bare_dedupe_shows_the_commands(tmp_path):
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    result = cli(check=False)
    assert result.code == 2 and result.out == b""
    assert "Back up:" in result.err and "  init " in result.err
