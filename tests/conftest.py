"""Shared pytest fixtures (the real SFTP and S3 test servers live in tests/servers.py; shared
helpers in tests/support.py, the CLI runner in tests/clitools.py)."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedupe.crypto import kdf
from tests.clitools import Cli, initialized_cli
from tests.servers import s3_server, sftp_server  # noqa: F401
from tests.support import CHEAP_KDF, make_tree, mount_tmpfs

# Every test launches the CLI in a subprocess, hundreds of times a run. Where the environment
# sets PYTHONDONTWRITEBYTECODE (this machine does), each launch compiled all of dedupe from
# source again: about 0.18 s of CPU of the ~0.7 s a launch costs. The subprocesses keep their
# bytecode in a folder outside the checkout instead (Python checks each file's mtime and size,
# so an edited module is compiled again); what runs is the same code.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    os.environ.setdefault(
        "PYTHONPYCACHEPREFIX",
        os.path.join(tempfile.gettempdir(), f"dedupe-tests-pycache-{os.getuid()}"),
    )


@pytest.fixture
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests only: keys made in this process use Argon2id at its minimum cost."""
    monkeypatch.setattr(kdf, "params_for_new_keys", CHEAP_KDF)


@pytest.fixture(scope="session")
def empty_repository(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A repository just made by `dedupe init`, once for the session; tests take copies."""
    return initialized_cli(tmp_path_factory.mktemp("empty-repository")).repo


@pytest.fixture
def cli(empty_repository: str, tmp_path: Path) -> Cli:
    """The CLI on a new, initialised repository at tmp_path/repo (cache at tmp_path/cache): a
    copy of the session's `empty_repository`, byte for byte what `init` writes (one launch of
    `init` per session instead of per test; its ids and keys are shared by the copies)."""
    shutil.copytree(empty_repository, tmp_path / "repo")
    return Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tree_snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, str]:
    """(repository, source folder, snapshot id): `make_tree` snapshotted once for the session.
    Read-only: a test that runs commands on it takes `tree_snapshot_copy`."""
    base = tmp_path_factory.mktemp("tree-snapshot")
    src = base / "src"
    make_tree(str(src))
    cli = initialized_cli(base)
    sid = cli("snapshot", str(src), "--json").json()["id"]
    return cli.repo, src, sid


@pytest.fixture
def tree_snapshot_copy(
    tree_snapshot: tuple[str, Path, str], tmp_path: Path
) -> tuple[Cli, Path, str]:
    """(cli, source folder, snapshot id): a copy of `tree_snapshot` at tmp_path/repo, its own
    cache at tmp_path/cache; `init` and `snapshot` ran once, not once per test."""
    repo, src, sid = tree_snapshot
    shutil.copytree(repo, tmp_path / "repo")
    return Cli(str(tmp_path / "repo"), str(tmp_path / "cache")), src, sid


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 MiB tmpfs (needs root; skipped without, a failure in CI)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mount_tmpfs(mount_point)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
