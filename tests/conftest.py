"""Shared pytest fixtures (the real SFTP and S3 test servers live in tests/servers.py; shared
helpers in tests/support.py, the CLI runner in tests/clitools.py)."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedupe.crypto import kdf
from tests.clitools import Cli, initialized_cli
from tests.servers import s3_server, sftp_server  # noqa: F401
from tests.support import CHEAP_KDF


@pytest.fixture
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests only: keys made in this process use Argon2id at its minimum cost."""
    monkeypatch.setattr(kdf, "params_for_new_keys", CHEAP_KDF)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The CLI on a new, initialised repository at tmp_path/repo (cache at tmp_path/cache)."""
    return initialized_cli(tmp_path)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 MiB tmpfs (needs root; skipped without, a failure in CI)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs in CI: {proc.stderr}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
