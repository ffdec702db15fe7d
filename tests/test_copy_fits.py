"""A copy to a drive too small for everything (issue 19): what fits is copied, oldest first and
whole snapshots only; the rest is named with the space it needs, exit 13; what was copied
restores. Real tmpfs drives, so the disk really fills."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clitools import Cli, initialized_cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a tmpfs drive needs root to mount")

NIGHT_BYTES = 3 << 20  # incompressible, so each night needs this much on the drive


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "drive"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def three_nights(tmp_path: Path, cli: Cli) -> list[str]:
    data = tmp_path / "data"
    data.mkdir()
    ids = []
    for night in range(3):
        (data / f"scan-{night}.bin").write_bytes(os.urandom(NIGHT_BYTES))
        result = cli("snapshot", str(data), "--json", "--time", f"2026-11-0{night + 2}T23:00")
        ids.append(result.json()["id"])
    return ids


@pytest.mark.parametrize("same_key", [True, False], ids=["same-key", "rechunk"])
def test_a_drive_too_small_gets_the_oldest_whole_snapshots(
    tmp_path: Path, drive: Path, same_key: bool
) -> None:
    cli = initialized_cli(tmp_path)
    ids = three_nights(tmp_path, cli)
    url = str(drive / "repo")
    init = ("init", "--same-key-as", cli.repo) if same_key else ("init",)
    cli(*init, env={"DEDUPE_REPO": url})

    result = cli("copy", "--to", url, check=False)
    assert result.code == 13, result.err
    assert url in result.err and "did not fit" in result.err and "more" in result.err
    assert "Traceback" not in result.err
    there = cli("snapshots", "--json", env={"DEDUPE_REPO": url}).json()
    copied = sorted(s["id"] for s in there)
    # 3 + 6 MiB fit in 8 MiB with room to spare only for the first nights: never all three.
    assert copied and len(copied) < 3
    assert copied == sorted(ids[: len(copied)])  # the oldest first
    check = cli("check", "--read-data", "--json", env={"DEDUPE_REPO": url}, check=False)
    assert check.code == 0, check.text + check.err
    restored = tmp_path / "restored"
    cli("restore", ids[0], "--target", str(restored), env={"DEDUPE_REPO": url})
    scan = (tmp_path / "data" / "scan-0.bin").relative_to("/")
    assert (restored / scan).read_bytes() == (tmp_path / "data" / "scan-0.bin").read_bytes()


def test_the_json_names_what_did_not_fit(tmp_path: Path, drive: Path) -> None:
    cli = initialized_cli(tmp_path)
    ids = three_nights(tmp_path, cli)
    url = str(drive / "repo")
    cli("init", "--same-key-as", cli.repo, env={"DEDUPE_REPO": url})
    result = cli("copy", "--to", url, "--json", check=False)
    assert result.code == 13
    data = result.json()
    assert data["copied"] + data["not_copied"] == ids
    assert data["not_copied"] and data["short_bytes"] > 0
