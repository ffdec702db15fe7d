"""Restore and mount hold a shared lock, so a gc cannot delete packs they are reading (and make a
sound backup look damaged in the middle of a recovery); where no lock can be written (a drive
mounted read-only) they still read, and say so."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clitools import Cli
from tests.support import assert_same_tree, open_repo
from tests.test_mount import mounted, needs_fuse


@pytest.fixture
def saved(tree_snapshot_copy: tuple[Cli, Path, str]) -> tuple[Cli, Path]:
    """A repository holding one snapshot of `source` (a copy: conftest's `tree_snapshot`)."""
    cli, source, _sid = tree_snapshot_copy
    return cli, source


def test_a_restore_while_gc_holds_the_repository_is_refused_with_exit_11(
    saved: tuple[Cli, Path], tmp_path: Path
) -> None:
    cli, _source = saved
    repo = open_repo(cli.repo)
    with repo.lock(exclusive=True):  # as a running gc holds it
        result = cli("restore", "latest", "--target", str(tmp_path / "out"), check=False)
    assert result.code == 11, result.err
    assert "locked" in result.err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


@pytest.fixture
def read_only_copy(saved: tuple[Cli, Path], tmp_path: Path) -> Iterator[Path]:
    """The repository seen through a read-only bind mount, as a write-protected drive."""
    cli, _source = saved
    view = tmp_path / "ro"
    view.mkdir()
    proc = subprocess.run(
        ["mount", "--bind", "-o", "ro", cli.repo, str(view)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot bind-mount read-only in CI: {proc.stderr}")
        pytest.skip(f"cannot bind-mount read-only (needs root): {proc.stderr.strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_restore_from_a_read_only_drive_works_and_says_it_took_no_lock(
    saved: tuple[Cli, Path], read_only_copy: Path, tmp_path: Path
) -> None:
    cli, source = saved
    target = tmp_path / "out"
    result = cli(
        "--repo", str(read_only_copy), "restore", "latest", "--target", str(target), check=False
    )
    assert result.code == 0, result.err
    assert "without one" in result.err and "gc" in result.err
    assert_same_tree(str(source), str(target / str(source).lstrip("/")))


@needs_fuse
def test_gc_waits_for_a_mount_to_end(saved: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, _source = saved
    with mounted(cli, tmp_path) as mount:
        refused = cli("gc", check=False)
        assert refused.code == 11, refused.err
        assert mount.stop() == 0
    cli("gc")  # the mount's lock went with it
