"""One key for all media, end to end through the CLI: `init --same-key-as` (a drive sharing the
server's key: copies move only missing data, the server's paper key opens the drive, unrelated
keys stay refused) and `key passwd --profile` over a repository and its drives."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from dedupe.repo import config
from tests.clitools import Cli, initialized_cli
from tests.support import PASSWORD

DRIVE_PASSWORD = "drive password, not the server's"
DATA_BYTES = 2 << 20


@pytest.fixture
def server(tmp_path: Path) -> Cli:
    """The server's repository with one snapshot of 2 MiB of incompressible data."""
    cli = initialized_cli(tmp_path)
    (tmp_path / "data.bin").write_bytes(random.Random(13).randbytes(DATA_BYTES))
    cli("snapshot", str(tmp_path / "data.bin"))
    return cli


def drive_cli(tmp_path: Path, name: str = "drive", password: str = DRIVE_PASSWORD) -> Cli:
    return Cli(str(tmp_path / name), str(tmp_path / "cache"), password=password)


def repo_id(cli: Cli) -> str:
    """The repository id, from the plaintext envelope of its config."""
    return config.read_envelope((Path(cli.repo) / "config").read_bytes())[0].hex()


def same_key_drive(server: Cli, tmp_path: Path, name: str = "drive") -> tuple[Cli, str]:
    """A drive made with `init --same-key-as` the server, with its own password; its id."""
    drive = drive_cli(tmp_path, name)
    made = drive(
        "--json", "init", "--same-key-as", server.repo, env={"DEDUPE_FROM_PASSWORD": PASSWORD}
    )
    return drive, made.json()["id"]


def test_same_key_drive_gets_only_missing_data(server, tmp_path):
    drive = drive_cli(tmp_path)
    made = drive(
        "--json", "init", "--same-key-as", server.repo, env={"DEDUPE_FROM_PASSWORD": PASSWORD}
    ).json()
    assert made["same_key_as"] == repo_id(server) != made["id"]  # the drive has its own id
    # The drive backs up the same file on its own: with the server's chunker seed and id key
    # its chunks are the server's, so copying the server's snapshot reads and adds only its
    # manifest and tree, not the 2 MiB again.
    first = drive("--json", "snapshot", str(tmp_path / "data.bin")).json()
    assert first["bytes_added"] > DATA_BYTES
    copied = server(
        "--json", "copy", "--to", drive.repo, env={"DEDUPE_TO_PASSWORD": DRIVE_PASSWORD}
    ).json()
    assert len(copied["copied"]) == 1 and copied["mode"] == "same-ids"
    assert copied["bytes_added"] < 64 * 1024 and copied["bytes_read"] < 64 * 1024
    # A drive with a key of its own (the only choice before) must have every byte read and
    # chunked again to find that it has them.
    plain = drive_cli(tmp_path, "plain")
    plain("init")
    plain("snapshot", str(tmp_path / "data.bin"))
    again = server(
        "--json", "copy", "--to", plain.repo, env={"DEDUPE_TO_PASSWORD": DRIVE_PASSWORD}
    ).json()
    assert again["mode"] != "same-ids" and again["bytes_read"] >= DATA_BYTES
    # A night's change on the server reaches the drive as that change only.
    changed = tmp_path / "data.bin"
    with open(changed, "ab") as f:
        f.write(random.Random(14).randbytes(256 * 1024))
    server("snapshot", str(changed))
    nightly = server(
        "--json", "copy", "--to", drive.repo, env={"DEDUPE_TO_PASSWORD": DRIVE_PASSWORD}
    ).json()
    assert len(nightly["copied"]) == 1
    assert 256 * 1024 <= nightly["bytes_added"] < DATA_BYTES // 2
    assert drive("cat", "latest", str(changed)).out == changed.read_bytes()
    assert drive("check", "--read-data").code == 0


def _lose_keys(cli: Cli) -> None:
    folder = os.path.join(cli.repo, "keys")
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    assert cli("snapshots", check=False).code == 12


@pytest.mark.parametrize("form", ["paper", "file"])
def test_server_key_export_opens_a_drive_whose_keys_are_lost(server, tmp_path, form):
    drive, drive_id = same_key_drive(server, tmp_path)
    server("copy", "--to", drive.repo, env={"DEDUPE_TO_PASSWORD": DRIVE_PASSWORD})
    exported = tmp_path / "server-key.txt"
    if form == "paper":
        exported.write_bytes(server("key", "export", "--paper").out)
    else:
        server("key", "export", str(exported))
    _lose_keys(drive)
    # The server's export, with the server's password (the drive's own is of no use now).
    wrong = drive("key", "import", str(exported), check=False)
    assert wrong.code == 12 and "password" in wrong.err and DRIVE_PASSWORD not in wrong.err
    result = drive("--json", "key", "import", str(exported), env={"DEDUPE_PASSWORD": PASSWORD})
    assert result.json()["repo"] == drive_id  # a key file bound to the drive's own id
    with_server_password = {"DEDUPE_PASSWORD": PASSWORD}
    data = drive("cat", "latest", str(tmp_path / "data.bin"), env=with_server_password).out
    assert data == (tmp_path / "data.bin").read_bytes()
    assert drive("check", env=with_server_password).code == 0
    # The drive's key export, made now, opens the server in turn (one key, both ways).
    drive("key", "export", str(tmp_path / "drive-key.txt"), env=with_server_password)
    _lose_keys(server)
    server("key", "import", str(tmp_path / "drive-key.txt"))
    assert server("snapshots").code == 0


def test_server_paper_key_opens_a_drive_whose_password_is_forgotten(server, tmp_path):
    drive, _ = same_key_drive(server, tmp_path)
    paper = tmp_path / "paper.txt"
    paper.write_bytes(server("key", "export", "--paper").out)
    # Nobody remembers the drive's password; its key file is still there.
    drive("key", "import", "--paper", str(paper), env={"DEDUPE_PASSWORD": PASSWORD})
    assert drive("snapshots", env={"DEDUPE_PASSWORD": PASSWORD}).code == 0
    assert drive("snapshots").code == 0  # the old key file still opens with the old password


def test_unrelated_key_exports_are_still_refused(server, tmp_path):
    drive, _ = same_key_drive(server, tmp_path)
    # Same password, unrelated repository.
    other = drive_cli(tmp_path, "other", PASSWORD)
    other("init")
    other("key", "export", str(tmp_path / "other.txt"))
    env = {"DEDUPE_PASSWORD": PASSWORD}
    result = drive("key", "import", str(tmp_path / "other.txt"), env=env, check=False)
    assert result.code == 2 and "belongs to repository" in result.err
    assert "does not open" in result.err and "Traceback" not in result.err
    # Sharing the chunker parameters and id key is not sharing the key.
    cousin = drive_cli(tmp_path, "cousin", PASSWORD)
    cousin("init", "--copy-chunker-params-from", server.repo)
    cousin("key", "export", str(tmp_path / "cousin.txt"))
    result = drive("key", "import", str(tmp_path / "cousin.txt"), env=env, check=False)
    assert result.code == 2 and "belongs to repository" in result.err
    result = server("key", "import", str(tmp_path / "cousin.txt"), check=False)
    assert result.code == 2 and "does not open" in result.err
    assert len(os.listdir(os.path.join(drive.repo, "keys"))) == 1  # nothing was written
    assert drive("snapshots", env=env, check=False).code == 12  # still not the drive's password


def test_same_key_init_refusals_leave_nothing(server, tmp_path):
    drive = drive_cli(tmp_path)
    target = Path(drive.repo)

    def init(*args: str, env: dict | None = None, code: int) -> str:
        result = drive("init", *args, env=env, check=False)
        assert result.code == code, result.err
        assert "Traceback" not in result.err and not target.exists()
        assert PASSWORD not in result.err and DRIVE_PASSWORD not in result.err
        return result.err

    # The server's password is wrong, or missing (the drive's own is then tried): exit 12.
    err = init("--same-key-as", server.repo, env={"DEDUPE_FROM_PASSWORD": "wrong"}, code=12)
    assert "DEDUPE_FROM_PASSWORD" in err and server.repo in err
    init("--same-key-as", server.repo, code=12)
    # Not a repository: exit 10.
    (tmp_path / "empty").mkdir()
    err = init("--same-key-as", str(tmp_path / "empty"), code=10)
    assert "no dedupe repository" in err
    init("--same-key-as", str(tmp_path / "missing"), code=10)
    # Both decide the chunker parameters: combining them is wrong usage (exit 2).
    err = init("--same-key-as", server.repo, "--chunk-size", "1M", code=2)
    assert "--chunk-size" in err
    err = init("--same-key-as", server.repo, "--copy-chunker-params-from", server.repo, code=2)
    assert "--copy-chunker-params-from" in err
    # No password for the new repository at all: exit 12 before anything is made.
    del drive.env["DEDUPE_PASSWORD"]
    init("--same-key-as", server.repo, env={"DEDUPE_FROM_PASSWORD": PASSWORD}, code=12)
    # With the server's password for both, no DEDUPE_FROM_* is needed.
    drive.env["DEDUPE_PASSWORD"] = PASSWORD
    assert drive("init", "--same-key-as", server.repo).code == 0
    assert drive("snapshots").code == 0
