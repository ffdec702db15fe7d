"""Snapshot input rules (CONTRACT.md), through the real CLI: a source that does not exist or is
not a file, folder or symlink is named on stderr and the rest is backed up (exit 3); with no
usable source nothing is saved (exit 1); a --time that cannot be converted is refused (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clitools import Cli


def source(root: Path) -> dict[str, bytes]:
    contents = {"chart.txt": b"patient chart\n" * 50, "scan.bin": os.urandom(20_000)}
    root.mkdir()
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return contents


def restored_files(cli: Cli, snap_id: str, target: Path, src: Path) -> dict[str, bytes]:
    cli("restore", snap_id, "--target", str(target))
    folder = Path(str(target) + str(src))
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)}


def test_a_missing_source_is_named_and_the_rest_saved(cli, tmp_path):
    src = tmp_path / "practice"
    contents = source(src)
    missing = tmp_path / "scanner-share"  # e.g. a network share that did not mount tonight
    result = cli("snapshot", str(missing), str(src), "--json", check=False)
    assert result.code == 3, result.err
    assert str(missing) in result.err and "does not exist" in result.err
    assert "Traceback" not in result.err
    snap = result.json()
    assert any(str(missing) in e for e in snap["errors"])
    assert restored_files(cli, snap["id"], tmp_path / "t", src) == contents


def test_no_existing_source_saves_nothing(cli, tmp_path):
    result = cli("snapshot", str(tmp_path / "gone"), str(tmp_path / "also-gone"), check=False)
    assert result.code == 1, result.err
    assert "gone" in result.err and "also-gone" in result.err
    assert "nothing was backed up" in result.err and "Traceback" not in result.err
    assert cli("snapshots", "--json").json() == []


def test_a_fifo_or_device_as_the_only_source_saves_nothing(cli, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for src in (str(fifo), "/dev/null"):
        result = cli("snapshot", src, check=False, timeout=120)
        assert result.code == 1, result.err
        assert src in result.err and "not a file, folder or symlink" in result.err
        assert "Traceback" not in result.err
    assert cli("snapshots", "--json").json() == []


def test_a_fifo_beside_a_folder_is_named_and_the_folder_saved(cli, tmp_path):
    src = tmp_path / "practice"
    contents = source(src)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = cli("snapshot", str(fifo), str(src), "--json", check=False, timeout=120)
    assert result.code == 3, result.err
    assert str(fifo) in result.err and "FIFO" in result.err
    target = tmp_path / "t"
    assert restored_files(cli, result.json()["id"], target, src) == contents
    assert not Path(str(target) + str(fifo)).exists()


@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00+14:00",  # UTC year 0: forget and plan overflowed on it
        "0001-01-01T00:00:00",
        "9999-12-31T23:00:00-05:00",  # UTC year 10000
        "1969-12-31T12:00:00+00:00",
        "1900-06-01",
    ],
)
def test_times_that_cannot_be_converted_are_refused(cli, tmp_path, when):
    f = tmp_path / "x"
    f.write_text("x")
    result = cli("snapshot", str(f), "--time", when, check=False)
    assert result.code == 2, result.err
    assert "--time" in result.err and "1970" in result.err and "Traceback" not in result.err
    assert cli("snapshots", "--json").json() == []


def test_times_at_the_edges_are_accepted(cli, tmp_path):
    f = tmp_path / "x"
    f.write_text("x")
    for when in ("1970-01-02T00:00:00+00:00", "9999-12-30T00:00:00+00:00"):
        cli("snapshot", str(f), "--time", when)
    times = sorted(s["time"] for s in cli("snapshots", "--json").json())
    assert times[0].startswith("1970-01-02") and times[1].startswith("9999-12-30")
