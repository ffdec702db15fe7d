"""The CLI's edge: how the `dedupe` command ends when its reader goes away."""

from __future__ import annotations

import logging
import subprocess

import pytest

from dedupe.cli.main import configure_logging
from dedupe.storage.faults import DropConnection
from dedupe.storage.memory import MemoryStorage
from dedupe.storage.retry import RetryingStorage


def test_reader_closing_the_pipe_early_is_not_an_error(cli, tmp_path):
    # `dedupe cat latest big | head -c 10`: the 4 MiB written to a closed pipe must end the
    # command quietly with exit 0, as `cat` in a shell pipeline does (it exited 1 "Broken pipe").
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (16 << 10))
    cli("snapshot", str(big))
    proc = cli.popen("cat", "latest", str(big), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(10)
    proc.stdout.close()  # more than a pipe's buffer is still to come: the next write fails
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert head == bytes(range(10))
    assert code == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err


# --- logging: retries and slow storage reach stderr ------------------------------------------


@pytest.fixture(autouse=True)
def _restore_logging():
    """configure_logging changes the process's `dedupe` logger: put it back after each test."""
    log = logging.getLogger("dedupe")
    saved = (list(log.handlers), log.propagate, log.level)
    yield
    log.handlers[:], log.propagate, log.level = saved[0], saved[1], saved[2]


def _flaky(url: str, times: int = 2) -> RetryingStorage:
    memory = MemoryStorage(url)
    memory.put("data/ab/pack", b"bytes")
    faulty = DropConnection(memory, "get", n=1, times=times)
    return RetryingStorage(faulty, base_delay=0.001, sleep=lambda _s: None)


@pytest.mark.parametrize(
    "quiet, verbose, shown", [(False, False, True), (False, True, True), (True, False, False)]
)
def test_storage_retries_are_warnings_on_stderr(capsys, quiet, verbose, shown):
    configure_logging(quiet=quiet, verbose=verbose)
    storage = _flaky("sftp://office:s3cret@backup.example.net/srv/repo")
    assert storage.get("data/ab/pack") == b"bytes"
    err = capsys.readouterr().err
    if not shown:
        assert err == ""  # -q: a retry that succeeded is no news
        return
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("warning: sftp://office:***@backup.example.net/srv/repo: get ")
    assert "retrying in" in lines[0] and "attempt 2 of 5" in lines[0]
    assert "attempt 3 of 5" in lines[1]
    assert "s3cret" not in err


def test_a_slow_request_is_a_warning(capsys):
    configure_logging(quiet=False, verbose=False)
    now = [0.0]

    def slow_get(name: str, offset: int = 0, length: int | None = None) -> bytes:
        now[0] += 45.0  # the storage's clock: this request took 45 s
        return b"late"

    memory = MemoryStorage("s3://practice-backups/offsite")
    memory.get = slow_get  # type: ignore[method-assign]
    storage = RetryingStorage(memory, clock=lambda: now[0], slow_after=30.0)
    assert storage.get("config") == b"late"
    err = capsys.readouterr().err
    assert err.startswith("warning: s3://practice-backups/offsite: the storage is slow: get ")
    assert "took 45 s" in err
