"""A snapshot in a hostile place: code planted in the working folder, files swapped for FIFOs
while the walk runs. The snapshot must neither run the planted code nor hang; it names what it
skipped, exits 3, and what it saved restores exactly."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.clitools import Cli, Result, initialized_cli
from tests.support import digest_tree, files_under

RACE_ENTRY = str(Path(__file__).with_name("walk_race_entry.py"))
TIMEOUT = 120


def plant_package(folder: Path, marker: Path) -> None:
    """A `dedupe` package in `folder` whose import leaves `marker` behind."""
    planted = folder / "dedupe"
    planted.mkdir(parents=True)
    code = f"open({str(marker)!r}, 'w').write('planted code ran')\n"
    (planted / "__init__.py").write_text(code)
    (planted / "offload.py").write_text(code + "import sys\nsys.exit(0)\n")  # the old helper
    (planted / "backup").mkdir()
    (planted / "backup" / "__init__.py").write_text(code)
    (planted / "backup" / "offload.py").write_text(code + "import sys\nsys.exit(0)\n")
    (planted / "__main__.py").write_text(code)


def run(cli: Cli, *args: str, cwd: str | None = None, entry: str | None = None, env=None) -> Result:
    command = cli.command(*args) if entry is None else [sys.executable, entry, *args]
    proc = subprocess.run(
        command,
        env=cli.env | (env or {}),
        cwd=cwd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the helper process needs 2 cores")
def test_the_helper_process_never_runs_code_from_the_working_folder(tmp_path):
    """Root in a user's folder: `dedupe snapshot .` starts the helper (a file of 1 MiB or
    more) but it must import the installed package, not the user's planted dedupe/."""
    home = tmp_path / "home"
    marker = tmp_path / "marker"
    plant_package(home, marker)
    rng = random.Random(11)
    (home / "scan.pdf").write_bytes(rng.randbytes(3 << 20))  # for the helper
    (home / "note.txt").write_bytes(rng.randbytes(5000))
    cli = initialized_cli(tmp_path)
    indexes_before = files_under(os.path.join(cli.repo, "index"))
    result = run(cli, "snapshot", ".", "--json", cwd=str(home))
    assert result.code == 0, result.err
    assert not marker.exists(), "the snapshot ran code planted in the working folder"
    # The helper did run (it writes an index file of its own beside ours).
    assert len(files_under(os.path.join(cli.repo, "index")) - indexes_before) >= 2
    target = tmp_path / "restored"
    cli("restore", result.json()["id"], "--target", str(target))
    assert digest_tree(str(target) + str(home)) == digest_tree(str(home))
    assert not marker.exists()


def test_the_dedupe_command_never_imports_from_the_working_folder(tmp_path):
    """The installed console script puts its own folder first on sys.path, never the working
    folder. (`python -m dedupe` does, as Python always does for -m: the user's choice.)"""
    script = os.path.join(sysconfig.get_path("scripts"), "dedupe")
    if not os.path.exists(script):
        pytest.skip("the dedupe console script is not installed here")
    home = tmp_path / "home"
    marker = tmp_path / "marker"
    plant_package(home, marker)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [script, "--version"], cwd=home, env=env, capture_output=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    assert b"dedupe" in proc.stdout
    assert not marker.exists(), "the dedupe command imported code from the working folder"


# --- FIFOs ---------------------------------------------------------------------------------


def make_source(root: Path) -> dict[str, bytes]:
    rng = random.Random(4)
    contents = {
        "a.txt": rng.randbytes(3000),
        "swapped-small.txt": rng.randbytes(2000),
        "swapped-large.bin": rng.randbytes(2 << 20),  # the helper's (or read-ahead's) lane
        "z.bin": rng.randbytes(1 << 20),
    }
    root.mkdir()
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return contents


def test_a_fifo_inside_a_folder_is_skipped(tmp_path):
    src = tmp_path / "src"
    make_source(src)
    os.mkfifo(src / "pipe")
    cli = initialized_cli(tmp_path)
    result = run(cli, "snapshot", str(src))
    assert result.code == 0, result.err
    assert "pipe" in result.err and "not a regular file" in result.err


@pytest.mark.parametrize("helper", [True, False], ids=["with-helper", "in-process"])
def test_files_swapped_for_fifos_during_the_walk_are_skipped(tmp_path, helper):
    """Each file is replaced by a FIFO after the walk listed it as a regular file and before
    it is opened (tests/walk_race_entry.py does the swap at exactly that point). Opening a
    FIFO for reading waits for a writer forever: the snapshot must not."""
    src = tmp_path / "src"
    contents = make_source(src)
    cli = initialized_cli(tmp_path)
    swap = os.pathsep.join(str(src / n) for n in ("swapped-small.txt", "swapped-large.bin"))
    env = {"WALK_TEST_FIFO": swap, "WALK_TEST_NO_HELPER": "" if helper else "1"}
    try:
        result = run(cli, "snapshot", str(src), "--json", entry=RACE_ENTRY, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the snapshot hung for {TIMEOUT} s on a FIFO")
    assert result.code == 3, result.err
    assert "Traceback" not in result.err
    for name in ("swapped-small.txt", "swapped-large.bin"):
        assert name in result.err
        assert not (src / name).is_file()  # the swap really happened
    assert len(result.json()["errors"]) == 2
    target = tmp_path / "restored"
    cli("restore", result.json()["id"], "--target", str(target))
    restored = Path(str(target) + str(src))
    assert sorted(os.listdir(restored)) == ["a.txt", "z.bin"]
    for name in ("a.txt", "z.bin"):
        assert (restored / name).read_bytes() == contents[name]
    # The lock went with the snapshot: maintenance runs.
    assert cli("gc", "-q", check=False).code == 0


def test_a_file_swapped_for_another_file_is_skipped(tmp_path):
    """The same inode check: a different file now under the name is not saved under the walk's
    metadata; it is named and will be in the next snapshot."""
    src = tmp_path / "src"
    make_source(src)
    cli = initialized_cli(tmp_path)
    env = {"WALK_TEST_REPLACE": str(src / "swapped-small.txt"), "WALK_TEST_NO_HELPER": "1"}
    result = run(cli, "snapshot", str(src), entry=RACE_ENTRY, env=env)
    assert result.code == 3, result.err
    assert "swapped-small.txt" in result.err and "replaced" in result.err
    again = cli("snapshot", str(src), "--json").json()  # the next night saves it
    assert again["files"] == 4 and not again["errors"]
