"""One key for all media, end to end through the CLI: `init --same-key-as` (a drive sharing the
server's key: copies move only missing data, the server's paper key opens the drive, unrelated
keys stay refused) and `key passwd --profile` over a repository and its drives."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dedupe.repo import config
from tests.clitools import Cli, initialized_cli
from tests.support import PASSWORD, mount_tmpfs

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
    if form == "paper":
        return
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


# --- key passwd --profile --------------------------------------------------------------------

NEW_PASSWORD = "the new password of every medium"
VAULT_PASSWORD = "the vault's own password"


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """`mount(name)`: a real 64 MiB tmpfs mounted at tmp_path/name (needs root), unmounted at
    the end of the test; a drive's mount point that is never mounted stays a plain folder."""
    mounted: list[Path] = []

    def mount(name: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        mount_tmpfs(point)
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in mounted:
            subprocess.run(["umount", "-l", str(point)], check=False)


def profile_for(tmp_path: Path, server: Cli, drives: dict[str, Path], offsites: str = "") -> Path:
    """A profile: the server's repository (password in a password-file) and `drives`."""
    (tmp_path / "password").write_text(PASSWORD + "\n")
    lines = [
        "[repository]",
        f'url = "{server.repo}"',
        f'password-file = "{tmp_path / "password"}"',
    ]
    for name, mount in drives.items():
        lines += [
            "[[drive]]",
            f'name = "{name}"',
            f'mount = "{mount}"',
            f'url = "{mount / "repo"}"',
            'weekdays = ["mon"]',
        ]
    path = tmp_path / "dedupe.toml"
    path.write_text("\n".join(lines) + "\n" + offsites)
    return path


def opens(cli: Cli, password: str, url: str | None = None) -> bool:
    env = {"DEDUPE_PASSWORD": password} | ({"DEDUPE_REPO": url} if url else {})
    result = cli("snapshots", env=env, check=False)
    assert result.code in (0, 12), result.err
    return result.code == 0


def passwd(server: Cli, tmp_path: Path, profile: Path, **env: str):
    server.env["DEDUPE_STATE_DIR"] = str(tmp_path / "state")
    return server(
        "key",
        "passwd",
        "--profile",
        str(profile),
        env={"DEDUPE_NEW_PASSWORD": NEW_PASSWORD} | env,
        check=False,
    )


def test_key_passwd_profile_changes_every_attached_medium(server, tmp_path, mounts):
    monday = mounts("monday")
    tuesday = tmp_path / "tuesday"  # its drive is not plugged in: an empty folder
    tuesday.mkdir()
    drive = Cli(str(monday / "repo"), str(tmp_path / "cache"))  # the repository's password
    drive("init", "--same-key-as", server.repo)
    cloud = Cli(str(tmp_path / "cloud"), str(tmp_path / "cache"))
    cloud("init", "--same-key-as", server.repo)
    vault = Cli(str(tmp_path / "vault"), str(tmp_path / "cache"), password=VAULT_PASSWORD)
    vault("init", "--same-key-as", server.repo, env={"DEDUPE_FROM_PASSWORD": PASSWORD})
    (tmp_path / "vault-password").write_text(VAULT_PASSWORD)
    offsites = (
        f'[[offsite]]\nname = "cloud"\nurl = "{cloud.repo}"\n'
        f'[[offsite]]\nname = "vault"\nurl = "{vault.repo}"\n'
        f'password-file = "{tmp_path / "vault-password"}"\n'
    )
    profile = profile_for(tmp_path, server, {"monday": monday, "tuesday": tuesday}, offsites)
    # The old password comes from the profile's password-file, not from DEDUPE_PASSWORD.
    result = passwd(server, tmp_path, profile, DEDUPE_PASSWORD="not the old password")
    assert result.code == 0, result.err
    text = result.text
    assert "repository: password changed" in text and "monday: password changed" in text
    assert "cloud: password changed" in text
    assert "tuesday: not attached" in text
    assert f"dedupe key passwd --repo {tuesday / 'repo'}" in text
    assert "vault: has its own password" in text
    assert str(tmp_path / "password") in text and "OLD" in text
    assert NEW_PASSWORD not in text + result.err and PASSWORD not in text + result.err
    for cli in (server, drive, cloud):
        assert opens(cli, NEW_PASSWORD) and not opens(cli, PASSWORD)
    assert opens(vault, VAULT_PASSWORD)
    assert os.listdir(tuesday) == [] and not os.path.ismount(tuesday)
    assert (tmp_path / "password").read_text() == PASSWORD + "\n"  # never written


def test_key_passwd_profile_names_a_medium_it_cannot_open(server, tmp_path, mounts):
    monday, wednesday = mounts("monday"), mounts("wednesday")
    Cli(str(monday / "repo"), str(tmp_path / "cache"))("init", "--same-key-as", server.repo)
    other = Cli(str(wednesday / "repo"), str(tmp_path / "cache"), password=DRIVE_PASSWORD)
    other("init", "--same-key-as", server.repo, env={"DEDUPE_FROM_PASSWORD": PASSWORD})
    profile = profile_for(tmp_path, server, {"monday": monday, "wednesday": wednesday})
    result = passwd(server, tmp_path, profile, DEDUPE_PASSWORD="unused")
    assert result.code == 12 and "wednesday" in result.err and "Traceback" not in result.err
    assert "wednesday: the old password does not open it" in result.text
    assert "monday: password changed" in result.text
    assert opens(server, NEW_PASSWORD)
    assert opens(server, NEW_PASSWORD, str(monday / "repo"))
    assert opens(other, DRIVE_PASSWORD)  # left as it was
    # JSON names the same.
    (tmp_path / "password").write_text(NEW_PASSWORD)
    result = server(
        "--json",
        "key",
        "passwd",
        "--profile",
        str(profile),
        env={"DEDUPE_NEW_PASSWORD": PASSWORD},
        check=False,
    )
    report = result.json()
    assert result.code == 12 and report["changed"] == ["repository", "monday"]
    assert [f["name"] for f in report["failed"]] == ["wednesday"]


def test_key_passwd_profile_with_a_wrong_old_password_changes_nothing(server, tmp_path, mounts):
    monday = mounts("monday")
    drive = Cli(str(monday / "repo"), str(tmp_path / "cache"))
    drive("init", "--same-key-as", server.repo)
    profile = profile_for(tmp_path, server, {"monday": monday})
    (tmp_path / "password").write_text("hunter2-guess")
    result = passwd(server, tmp_path, profile)
    assert result.code == 12 and "nothing was changed" in result.err
    assert "Traceback" not in result.err and "hunter2" not in result.err
    assert opens(server, PASSWORD) and opens(drive, PASSWORD)
    # Without a password-file the old password comes from DEDUPE_PASSWORD_*.
    text = profile.read_text().replace(f'password-file = "{tmp_path / "password"}"\n', "")
    profile.write_text(text)
    result = passwd(server, tmp_path, profile)
    assert result.code == 0, result.err
    assert "DEDUPE_PASSWORD" in result.text
    assert opens(server, NEW_PASSWORD) and opens(drive, NEW_PASSWORD)
    assert (
        server("key", "passwd", "--profile", str(profile), "--repo", server.repo, check=False).code
        == 2
    )
