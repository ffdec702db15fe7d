"""A listing that cannot be completed stops the command; it never looks like an empty folder.

Through the real CLI on a real repository. Tests run as root, whom permission bits do not stop,
so the commands run as root *without* CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (setpriv): then
a folder with mode 000 is unreadable to dedupe exactly as it is to an unprivileged backup user.
(Running as uid 65534 is not possible here: the interpreter lives under /root.)
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clitools import Cli, Result, initialized_cli

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to drop the permission-override capabilities",
)
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def as_backup_user(cli: Cli, *args: str) -> Result:
    """Run dedupe as a process that permission bits apply to."""
    import subprocess

    proc = subprocess.run(
        [*NO_OVERRIDE, *cli.command(*args)],
        capture_output=True,
        env=cli.env,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def repo_files(repo: str) -> dict[str, str]:
    """Every file of the repository (following a symlinked folder) and its digest."""
    out = {}
    for folder, _dirs, files in os.walk(repo, followlinks=True):
        for name in files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, repo)] = digest_tree_file(path)
    return out


def assert_nothing_lost(repo: str, before: dict[str, str]) -> None:
    """Every file that was there is still there, unchanged (the census, a count that snapshot,
    forget and gc rewrite, does not matter here)."""
    after = repo_files(repo)
    kept = {name: digest for name, digest in before.items() if name != "census"}
    assert {name: after.get(name) for name in kept} == kept


def digest_tree_file(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """A repository with two snapshots (the second shares nothing with the first)."""
    os.chmod(tmp_path, 0o755)
    cli = initialized_cli(tmp_path)
    for name in ("one", "two"):
        src = tmp_path / name
        src.mkdir()
        (src / "file").write_bytes(os.urandom(200_000))
        cli("snapshot", str(src))
    yield cli
    for folder in ("snapshots", "data", "index"):  # let pytest clean up
        path = os.path.join(cli.repo, folder)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o755)


def snapshot_ids(cli: Cli) -> list[str]:
    return sorted(s["id"] for s in cli("snapshots", "--json").json())


# --- unreadable folders --------------------------------------------------------------------


@needs_root
def test_unreadable_snapshots_folder_stops_every_command_and_gc_deletes_nothing(
    cli: Cli,
) -> None:
    ids = snapshot_ids(cli)
    before = repo_files(cli.repo)
    os.chmod(os.path.join(cli.repo, "snapshots"), 0)
    for args in (
        ("snapshots",),
        ("check",),
        ("gc",),
        ("forget", "--keep-last", "1"),
        ("forget", "--keep-last", "1", "--gc"),
    ):
        result = as_backup_user(cli, *args)
        assert result.code != 0, (args, result.text)
        assert "cannot list snapshots/" in result.err and "Permission denied" in result.err
        assert "read every folder" in result.err and "Traceback" not in result.err
    os.chmod(os.path.join(cli.repo, "snapshots"), 0o755)
    assert_nothing_lost(cli.repo, before)  # gc deleted no pack, forget no snapshot
    assert snapshot_ids(cli) == ids
    assert cli("check").code == 0


@needs_root
@pytest.mark.parametrize("folder", ["data", "index"])
def test_unreadable_data_or_index_folder_stops_check_and_gc(cli: Cli, folder: str) -> None:
    """`snapshots` and `forget` read neither folder: they still do their (correct) job."""
    ids = snapshot_ids(cli)
    before = repo_files(cli.repo)
    os.chmod(os.path.join(cli.repo, folder), 0)
    for args in (("check",), ("gc",), ("gc", "--dry-run")):
        result = as_backup_user(cli, *args)
        assert result.code != 0, (args, result.text)
        assert f"cannot list {folder}/" in result.err and "Traceback" not in result.err
    listed = as_backup_user(cli, "snapshots", "--json")
    assert listed.code == 0 and sorted(s["id"] for s in listed.json()) == ids
    kept = as_backup_user(cli, "forget", "--keep-last", "2")
    assert kept.code == 0, kept.err
    os.chmod(os.path.join(cli.repo, folder), 0o755)
    assert_nothing_lost(cli.repo, before)
    assert cli("check").code == 0


# --- symlinked folders ---------------------------------------------------------------------


def test_symlinked_data_folder_is_followed_by_check_and_gc_alike(cli: Cli, tmp_path: Path) -> None:
    """An office moved data/ to another disk and left a symlink: nothing is garbage."""
    other_disk = tmp_path / "other-disk"
    other_disk.mkdir()
    shutil.move(os.path.join(cli.repo, "data"), other_disk / "data")
    os.symlink(other_disk / "data", os.path.join(cli.repo, "data"))
    before = repo_files(cli.repo)
    assert any(name.startswith("data/") for name in before)
    assert cli("check").code == 0
    freed = cli("gc", "--json").json()
    assert freed["freed_bytes"] == 0
    assert_nothing_lost(cli.repo, before)
    assert cli("check", "--read-data").code == 0


def test_symlink_loop_in_the_repository_stops_check_and_gc(cli: Cli) -> None:
    before = repo_files(cli.repo)
    os.symlink("..", os.path.join(cli.repo, "data", "zz"))
    for args in (("check",), ("gc",)):
        result = cli(*args, check=False)
        assert result.code not in (0, 14), (args, result.err)
        assert "data/zz/" in result.err and "link" in result.err
        assert "Traceback" not in result.err
    os.unlink(os.path.join(cli.repo, "data", "zz"))
    assert_nothing_lost(cli.repo, before)


# --- leftovers only in dedupe's folders ----------------------------------------------------


def test_gc_leaves_a_users_tmp_file_alone(cli: Cli) -> None:
    notes = Path(cli.repo) / "notes"
    notes.mkdir()
    (notes / ".tmp-x").write_text("the office manager's notes")
    pack_folder = next(p for p in (Path(cli.repo) / "data").iterdir() if p.is_dir())
    ours = pack_folder / ".tmp-0123456789abcdef"  # an interrupted write
    ours.write_bytes(b"partial pack")
    two_days_ago = time.time() - 2 * 86400  # both older than any grace period of gc
    for path in (ours, notes / ".tmp-x"):
        os.utime(path, (two_days_ago, two_days_ago))
    cli("gc")
    assert (notes / ".tmp-x").read_text() == "the office manager's notes"
    assert not ours.exists()


# --- repository URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sftp://user:s3cr3t-pw@host:bad/path",
        "sftp://user:s3cr3t-pw@host/path",
        "sftp://user:s3cr3t-pw@@host:22/path",
        "s3://user:s3cr3t-pw@bucket/prefix",
    ],
)
def test_no_message_carries_the_urls_password(cli: Cli, url: str) -> None:
    for args in (("snapshots",), ("init",), ("copy", "--to", url)):
        env = {"DEDUPE_REPO": url} if args[0] != "copy" else {}
        result = cli(*args, env=env, check=False)
        assert result.code == 2, (args, result.err)
        assert "s3cr3t" not in result.err + result.text and "***" in result.err
        assert "Traceback" not in result.err


def test_bad_port_is_a_usage_error_naming_the_url(cli: Cli) -> None:
    result = cli("snapshots", env={"DEDUPE_REPO": "sftp://user@host:bad/path"}, check=False)
    assert result.code == 2 and "bad port" in result.err and "host:bad" in result.err


def test_a_file_is_not_a_repository(cli: Cli, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a repository")
    for repo in (str(a_file), f"file://{a_file}", str(a_file / "repo")):
        result = cli("snapshots", env={"DEDUPE_REPO": repo}, check=False)
        assert result.code == 10, (repo, result.err)
        assert str(a_file) in result.err and "is a file" in result.err
        assert "Traceback" not in result.err
    made = cli("init", env={"DEDUPE_REPO": str(a_file)}, check=False)
    assert made.code != 0 and "is a file" in made.err and "Traceback" not in made.err
    assert a_file.read_text() == "not a repository"
