"""The CLI's edge: how the `dedupe` command ends when its reader goes away."""

from __future__ import annotations

import subprocess


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
