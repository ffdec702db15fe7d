"""Remote faults through the real CLI: an SFTP server killed in the middle of a snapshot, and
clear refusals for an unknown host key and wrong S3 credentials."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from tests.clitools import Cli
from tests.servers import SSHD, start_sftp_server
from tests.support import assert_same_tree, files_under, wait_for_new_file


@pytest.fixture
def private_sftp():
    """A private sshd this test may kill and bring back on the same port."""
    workdir = tempfile.mkdtemp(prefix="dedupe-sshd-kill-")
    try:
        server = start_sftp_server(workdir)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot start sshd: {exc}")
        pytest.skip(f"cannot start sshd: {exc}")
    procs = [server.proc]
    try:
        yield server, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def kill_server(server, procs) -> None:
    for pid in server.session_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.killpg(procs[-1].pid, signal.SIGKILL)
    procs[-1].wait()


def restart_server(server, procs) -> None:
    config = os.path.join(server.workdir, "sshd_config")  # same port, same host key
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    procs.append(proc)
    deadline = time.monotonic() + 60  # sshd starts in well under a second, unless very busy
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", server.port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("sshd did not come back")


def test_sftp_server_killed_mid_snapshot(private_sftp, tmp_path):
    server, procs = private_sftp
    cli = Cli(server.url(server.root + "/repo"), str(tmp_path / "cache"))
    cli.env |= server.env()
    cli("init")
    first = tmp_path / "first"
    first.mkdir()
    (first / "letter.txt").write_text("Dear patient,\n" * 500)
    first_id = cli("snapshot", str(first), "--json").json()["id"]
    big = tmp_path / "big"
    big.mkdir()
    rng = random.Random(4)
    for i in range(6):
        (big / f"scan{i}.bin").write_bytes(rng.randbytes(16 << 20))
    # Kill the server as soon as the first pack (or its temporary upload) shows on its disk: the
    # other five 16 MiB packs are still to come, so the snapshot cannot have finished, however fast
    # this machine is. A fixed delay was not enough on a fast CI machine.
    packs = os.path.join(server.root, "repo", "data")
    before = files_under(packs)
    proc = cli.popen("snapshot", str(big), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_new_file(packs, proc, before)
    assert proc.poll() is None, "the snapshot ended before any pack reached the server"
    kill_server(server, procs)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode != 0
    message = err.decode()
    # Retry warnings may come first; the last line is the error.
    assert "Traceback" not in message and message.splitlines()[-1].startswith("dedupe:"), message
    restart_server(server, procs)
    target = tmp_path / "restore-first"
    cli("restore", first_id, "--target", str(target))
    assert_same_tree(str(first), str(target) + str(first))
    assert [s["id"] for s in cli("snapshots", "--json").json()] == [first_id]
    # The next snapshot works, and nothing the dead run left behind harms the repository.
    again = cli("snapshot", str(big), "--json").json()
    target = tmp_path / "restore-big"
    cli("restore", again["id"], "--target", str(target))
    assert_same_tree(str(big), str(target) + str(big))
    assert cli("check", "--read-data", "--json").json()["ok"]


def test_unknown_sftp_host_key_is_refused_with_exit_1(private_sftp, tmp_path):
    server, _procs = private_sftp
    cli = Cli(server.url(server.root + "/repo2"), str(tmp_path / "cache"))
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    cli.env |= server.env() | {"DEDUPE_SFTP_KNOWN_HOSTS": str(empty_known_hosts)}
    result = cli("init", check=False)
    assert result.code == 1, result.err
    assert "not known" in result.err and "Traceback" not in result.err
    assert not os.path.exists(os.path.join(server.root, "repo2", "config"))


def test_wrong_s3_credentials_exit_1_without_the_secret(s3_server, tmp_path):
    cli = Cli("s3://creds-test/repo", str(tmp_path / "cache"))
    env = s3_server.env() | {"AWS_SECRET_ACCESS_KEY": "definitely-wrong-secret-123"}
    cli.env |= env
    result = cli("init", check=False)
    assert result.code == 1, result.err
    assert "Traceback" not in result.err and "definitely-wrong-secret-123" not in result.err
    assert "AWS_ACCESS_KEY_ID" in result.err or "credential" in result.err.lower()
