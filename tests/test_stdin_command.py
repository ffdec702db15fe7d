"""`dedupe snapshot --stdin-name NAME --stdin-from-command -- CMD [ARG...]` through the real CLI
(CONTRACT.md): CMD's stdout is saved as `/NAME`; when CMD cannot start, exits non-zero or dies,
nothing is saved and the exit code is 1 with CMD's status in the message. An empty stream (from
a command or from `-`) is saved with a warning, exit 3."""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import subprocess
import sys

import pytest

from tests.clitools import Cli

PY = sys.executable
# Writes MB megabytes of reproducible bytes, then its own arguments, then exits with STATUS:
#   python3 -c WRITER MB STATUS [ARG...]
WRITER = """\
import random, sys
size, status = int(float(sys.argv[1]) * 1_000_000), int(sys.argv[2])
out = sys.stdout.buffer
out.write(random.Random(7).randbytes(size))
out.write(repr(sys.argv[3:]).encode())
out.flush()
sys.exit(status)
"""


def written(mb: float, *args: str) -> bytes:
    """What WRITER writes for these arguments."""
    return random.Random(7).randbytes(int(mb * 1_000_000)) + repr(list(args)).encode()


def snapshot_of(cli: Cli, name: str, *command: str, json: bool = False):
    args = ["snapshot", "--stdin-name", name, "--stdin-from-command", "--", *command]
    return cli(*(["--json"] if json else []), *args, check=False)


def snapshot_ids(cli: Cli) -> list[str]:
    return [s["id"] for s in cli("snapshots", "--json").json()]


def test_a_command_output_is_saved_byte_for_byte(cli):
    # The command's own options (-U, --json, --stdin-name) are its own, never dedupe's.
    args = ("-U", "office", "--json", "--stdin-name", "other")
    result = snapshot_of(cli, "practice.sql", PY, "-c", WRITER, "3", "0", *args)
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    assert result.text.startswith("snapshot ") and "saved" in result.text  # human output
    (snap,) = cli("snapshots", "--json").json()
    assert snap["id"] in result.text
    expected = written(3, *args)
    out = cli("cat", "latest", "practice.sql").out
    assert len(out) == len(expected)
    assert hashlib.sha256(out).digest() == hashlib.sha256(expected).digest()
    assert cli("cat", snap["id"], "/practice.sql").out == expected
    listing = cli("ls", "latest", "/practice.sql", "--json").json()
    assert [(e["path"], e["size"]) for e in listing] == [("/practice.sql", len(expected))]


def test_json_prints_the_new_snapshot(cli):
    result = snapshot_of(cli, "practice.sql", PY, "-c", WRITER, "0.1", "0", json=True)
    assert result.code == 0, result.err
    printed = result.json()
    assert snapshot_ids(cli) == [printed["id"]]
    assert printed["bytes_read"] == len(written(0.1)) and printed["files"] == 1
    assert printed["warnings"] == []


def test_a_failing_command_saves_nothing(cli):
    result = snapshot_of(cli, "practice.sql", "false")
    assert result.code == 1, result.err
    assert "'false'" in result.err and "exit status 1" in result.err
    assert "practice.sql was not saved" in result.err and "Traceback" not in result.err
    assert snapshot_ids(cli) == []


def test_a_command_that_fails_halfway_saves_nothing_and_keeps_the_last_backup(cli):
    good = written(1)
    assert snapshot_of(cli, "practice.sql", PY, "-c", WRITER, "1", "0").code == 0
    before = snapshot_ids(cli)
    # Half its output (2 MB of a dump), then a failure: exit status 3.
    result = snapshot_of(cli, "practice.sql", PY, "-c", WRITER, "2", "3")
    assert result.code == 1, result.err
    assert "exit status 3" in result.err and "Traceback" not in result.err
    assert snapshot_ids(cli) == before
    assert cli("cat", "latest", "practice.sql").out == good
    assert cli("check", "--json").json()["ok"] is True


def test_a_command_killed_by_a_signal_saves_nothing(cli):
    result = snapshot_of(cli, "practice.sql", "sh", "-c", "echo partial; kill -9 $$")
    assert result.code == 1, result.err
    assert "killed by signal 9 (SIGKILL)" in result.err
    assert "echo partial; kill -9 $$" in result.err and "Traceback" not in result.err
    assert snapshot_ids(cli) == []


def test_a_command_that_closes_its_output_is_waited_for(cli):
    # It closes stdout (dedupe sees the end of the stream) and fails only afterwards: the
    # status dedupe reports is the one the command exits with, whenever that is.
    script = "import os, sys, time; print('data', flush=True); os.close(1); time.sleep(1); "
    script += "sys.exit(4)"
    result = snapshot_of(cli, "practice.sql", PY, "-c", script)
    assert result.code == 1, result.err
    assert "exit status 4" in result.err
    assert snapshot_ids(cli) == []


@pytest.mark.parametrize("program", ["no-such-dump-program", "/nonexistent/bin/pg_dump"])
def test_a_command_that_does_not_exist_saves_nothing(cli, program):
    result = snapshot_of(cli, "practice.sql", program, "practice")
    assert result.code == 1, result.err
    assert program in result.err and "could not be started" in result.err
    assert "was not found" in result.err and "Traceback" not in result.err
    assert snapshot_ids(cli) == []


def test_a_command_that_is_not_executable_saves_nothing(cli, tmp_path):
    script = tmp_path / "dump.sh"
    script.write_text("#!/bin/sh\necho data\n")
    script.chmod(0o644)
    result = snapshot_of(cli, "practice.sql", str(script))
    assert result.code == 1, result.err
    assert str(script) in result.err and "permission denied" in result.err
    assert "Traceback" not in result.err
    assert snapshot_ids(cli) == []


def test_a_command_with_no_output_is_saved_with_a_warning(cli):
    result = snapshot_of(cli, "practice.sql", "true", json=True)
    assert result.code == 3, result.err
    assert "the stream practice.sql was empty" in result.err and "'true'" in result.err
    assert "Traceback" not in result.err
    printed = result.json()
    assert snapshot_ids(cli) == [printed["id"]]
    assert printed["bytes_read"] == 0 and len(printed["warnings"]) == 1
    assert cli("cat", "latest", "practice.sql").out == b""


def test_an_empty_stdin_is_saved_with_a_warning(cli):
    result = cli("snapshot", "-", "--stdin-name", "practice.sql", input=b"", check=False)
    assert result.code == 3, result.err
    assert "the stream practice.sql was empty" in result.err and "Traceback" not in result.err
    (snap,) = cli("snapshots", "--json").json()
    assert snap["id"] in result.text
    assert cli("cat", "latest", "practice.sql").out == b""


@pytest.mark.parametrize(
    "args",
    [
        ("--stdin-from-command", "--", "echo", "x"),  # no --stdin-name
        ("--stdin-name", "x", "--stdin-from-command"),  # no command
        ("/etc/hostname", "--stdin-name", "x", "--stdin-from-command"),  # a PATH, no --
        ("/etc/hostname", "--stdin-name", "x", "--stdin-from-command", "--", "echo"),
        ("-", "--stdin-name", "x", "--stdin-from-command", "--", "echo"),
        ("--stdin-name", "x"),  # neither a PATH nor a command
    ],
)
def test_usage_errors(cli, args):
    result = cli("snapshot", *args, check=False)
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    assert snapshot_ids(cli) == []


def test_the_usage_messages_say_what_to_do(cli):
    result = cli("snapshot", "--stdin-from-command", "--", "echo", "x", check=False)
    assert "--stdin-name" in result.err
    result = cli(
        "snapshot", "/etc/hostname", "--stdin-name", "x", "--stdin-from-command", check=False
    )
    assert "no PATH" in result.err and "after --" in result.err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_killing_dedupe_stops_the_command(cli, tmp_path):
    # The command tells us its pid through a FIFO it keeps open, writes a little, then waits
    # forever with its stdout open. Only its death closes the FIFO's last writer: then the FIFO
    # reaches its end for us (no polling, no sleeps).
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    script = (
        "import os, signal, sys\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
        "os.write(fd, b'%d\\n' % os.getpid())\n"
        "sys.stdout.write('data'); sys.stdout.flush()\n"
        "signal.pause()\n"
    )
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    proc = cli.popen(
        "snapshot",
        "--stdin-name",
        "practice.sql",
        "--stdin-from-command",
        "--",
        PY,
        "-c",
        script,
        str(fifo),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready, _, _ = select.select([reader], [], [], 120)
        assert ready, f"the command did not start (dedupe exited {proc.poll()})"
        pid = int(os.read(reader, 100).split()[0])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ready, _, _ = select.select([reader], [], [], 60)
        assert ready and os.read(reader, 100) == b"", f"the command (pid {pid}) outlived dedupe"
    finally:
        os.close(reader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert snapshot_ids(cli) == []


def test_the_help_shows_an_example(cli):
    text = cli("snapshot", "--help").text
    assert "--stdin-from-command -- pg_dump" in text
    assert "No shell is used" in " ".join(text.split())
