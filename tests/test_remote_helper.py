"""The snapshot's helper process on remote repositories (dedupe.backup.offload): on SFTP it opens
its own ssh session to the same folder, on S3 its own connections to the same bucket, and the
key still reaches it only over the private socket pair. A snapshot to either uses the helper
(its own index file beside the parent's), restores bit for bit, and a helper killed in the
middle fails the snapshot cleanly and leaves a repository that checks, snapshots and restores.
Real servers: the session's sshd and SeaweedFS (tests/servers.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedupe.backup.offload import open_recipe, storage_recipe
from dedupe.storage import Storage, open_storage
from tests.clitools import Cli, snapshot_restores_exactly
from tests.servers import S3Server, SFTPServer
from tests.support import digest_tree, helper_pids


@pytest.fixture(params=["sftp", "s3"])
def remote(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    """A CLI on a new, initialised SFTP or S3 repository; this process's environment points at
    the same server (for `open_storage` in the test)."""
    if request.param == "sftp":
        server: SFTPServer = request.getfixturevalue("sftp_server")
        cli = Cli(server.url(f"{server.root}/{uuid.uuid4().hex}"), str(tmp_path / "cache"))
        env = server.env()
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        cli = Cli(f"s3://helper-{uuid.uuid4().hex[:12]}/repo", str(tmp_path / "cache"))
        env = s3.env()
    cli.env |= env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cli("init", "-q")
    yield cli


def _names(storage: Storage, prefix: str) -> set[str]:
    """Names of the objects under `prefix` (a folder that does not exist yet: none)."""
    return {info.name for info in storage.list() if info.name.startswith(prefix)}


def _tree(root: Path, bigs: int, big_size: int) -> None:
    """Small notes in folders and `bigs` incompressible large files (the helper's share)."""
    rng = random.Random(17)
    for i in range(6):
        folder = root / f"notes{i}"
        folder.mkdir(parents=True)
        for j in range(8):
            (folder / f"n{j}.txt").write_bytes(rng.randbytes(rng.randint(0, 30_000)))
    for i in range(bigs):
        (root / f"scan{i}.bin").write_bytes(rng.randbytes(big_size))


def test_the_helper_reopens_the_same_remote_storage(remote: Cli):
    """What the helper is sent names the same location, and holds no secret."""
    storage = open_storage(remote.repo)
    recipe = storage_recipe(storage)
    assert recipe is not None
    assert os.environ.get("AWS_SECRET_ACCESS_KEY", "<none>") not in repr(recipe)
    reopened = open_recipe(recipe)
    try:
        assert reopened.url == storage.url
        assert reopened.get("config") == storage.get("config")
    finally:
        reopened.close()
        storage.close()


def test_a_remote_snapshot_uses_the_helper_and_restores_exactly(remote: Cli, tmp_path: Path):
    src = tmp_path / "src"
    _tree(src, bigs=2, big_size=6 << 20)
    storage = open_storage(remote.repo)
    before = _names(storage, "index/")
    snap = snapshot_restores_exactly(remote, src, tmp_path / "restored")
    assert snap["files"] == 6 * 8 + 2 and not snap["errors"]
    # Two writers, one index file each (an index names up to 256 packs): the helper stored a
    # share through its own connection.
    assert len(_names(storage, "index/") - before) == 2
    assert remote("check", "--read-data", "--json").json()["ok"]
    storage.close()


def test_a_helper_killed_mid_snapshot_leaves_the_repository_consistent(remote: Cli, tmp_path: Path):
    src = tmp_path / "src"
    _tree(src, bigs=4, big_size=24 << 20)
    storage = open_storage(remote.repo)
    packs_before = _names(storage, "data/")
    proc = remote.popen("snapshot", str(src), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Strike once the helper runs and a pack of this snapshot is stored: the snapshot is
        # then in the middle of its large files (96 MiB, first pack after a few MiB).
        helpers: list[int] = []
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            helpers = helpers or helper_pids(proc.pid)
            if helpers and _names(storage, "data/") - packs_before:
                break
            time.sleep(0.01)
        assert helpers, "no helper process stored the large files"
        os.kill(helpers[0], signal.SIGKILL)
        _out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, "the snapshot went on as if its helper had stored its files"
    assert "helper process" in err.decode() and "Traceback" not in err.decode()
    assert remote("snapshots", "--json").json() == []
    assert remote("check", "--json").json()["ok"]
    # The next snapshot is whole, and gc leaves a repository whose data all reads back.
    snapshot_restores_exactly(remote, src, tmp_path / "restored")
    remote("gc", "--max-unused", "0", "-q")
    assert remote("check", "--read-data", "--json").json()["ok"]
    storage.close()


REFUSE_HELPER = """#!/bin/sh
# ssh for everyone but the snapshot's helper process: its login is refused, as a server that
# allows one session, or a rate limit, would.
if tr '\\0' ' ' < /proc/$PPID/cmdline | grep -q dedupe.backup.offload; then
    echo "ssh: connect to host 127.0.0.1 port 22: Connection refused" >&2
    exit 255
fi
exec ssh "$@"
"""


@pytest.mark.parametrize("bigs", [0, 2])  # small-file batches only; large files too
def test_a_helper_that_cannot_log_in_leaves_the_snapshot_to_the_parent(
    sftp_server: SFTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bigs: int
):
    """The helper's own ssh login is refused: the snapshot warns once, stores everything in
    one process and is whole (one new index file: the parent's)."""
    wrapper = tmp_path / "ssh-refusing-helper"
    wrapper.write_text(REFUSE_HELPER)
    wrapper.chmod(0o755)
    cli = Cli(sftp_server.url(f"{sftp_server.root}/{uuid.uuid4().hex}"), str(tmp_path / "cache"))
    cli.env |= sftp_server.env() | {"DEDUPE_SSH_COMMAND": str(wrapper)}
    cli("init", "-q")
    for name, value in sftp_server.env().items():
        monkeypatch.setenv(name, value)
    storage = open_storage(cli.repo)
    before = _names(storage, "index/")
    src = tmp_path / "src"
    _tree(src, bigs=bigs, big_size=6 << 20)
    letters = src / "letters"  # enough small files for batches to the helper (SMALL_AFTER)
    letters.mkdir()
    for i in range(400):
        (letters / f"l{i:03d}.txt").write_text(f"Dear patient {i},\n" * (i % 40 + 1))
    result = cli("snapshot", str(src), "--json")
    snap = result.json()
    assert snap["files"] == 6 * 8 + bigs + 400 and not snap["errors"]
    assert "could not open the repository" in result.err and "Connection refused" in result.err
    assert result.err.count("helper process") == 1 and "Traceback" not in result.err
    assert len(_names(storage, "index/") - before) == 1
    storage.close()
    target = tmp_path / "restored"
    cli("restore", snap["id"], "--target", str(target))
    assert digest_tree(str(target) + str(src)) == digest_tree(str(src))
    assert cli("check", "--read-data", "--json").json()["ok"]
