"""A snapshot commits only while nothing can have deleted what it deduplicated against: its lock
still stands and no gc or `repair index` wrote an index since it loaded its own (issue 11: a
live snapshot's lock judged stale let gc free its packs, and the snapshot still exited 0)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from tests.clitools import Cli
from tests.support import digest_tree, files_under, wait_for_new_file

PAUSE_ENTRY = str(Path(__file__).with_name("snapshot_pause_entry.py"))


def make_source(root: Path, seed: int) -> None:
    rng = random.Random(seed)
    root.mkdir()
    for i in range(6):
        (root / f"scan{i}.pdf").write_bytes(rng.randbytes(200_000))


def start_paused_snapshot(cli: Cli, tmp_path: Path, source: Path) -> tuple[subprocess.Popen, Path]:
    reached, pause = tmp_path / "reached", tmp_path / "pause"
    pause.touch()
    env = cli.env | {"SNAPSHOT_TEST_REACHED": str(reached), "SNAPSHOT_TEST_PAUSE_FILE": str(pause)}
    proc = subprocess.Popen(
        [sys.executable, PAUSE_ENTRY, "snapshot", str(source)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    before = files_under(str(tmp_path))
    while proc.poll() is None and not reached.exists():
        if not wait_for_new_file(str(tmp_path), proc, before, timeout=120):
            break
        before = files_under(str(tmp_path))
    assert reached.exists(), "the snapshot ended before its commit"
    return proc, pause


def lock_files(repo: str) -> list[str]:
    return [os.path.join(repo, "locks", n) for n in os.listdir(os.path.join(repo, "locks"))]


def gc_behind_the_snapshots_back(cli: Cli, tmp_path: Path) -> None:
    """What a gc that misjudged the snapshot's lock does: forget the old snapshot and free its
    data while the snapshot is still running."""
    cli("forget", "--keep-tag", "keep")
    cli("gc", "--max-unused", "0", "--allow-empty")


def test_snapshot_whose_lock_was_taken_away_saves_nothing(cli, tmp_path):
    first = tmp_path / "first"
    make_source(first, 1)
    cli("snapshot", str(first), "--tag", "keep")
    second = tmp_path / "second"
    make_source(second, 2)
    proc, pause = start_paused_snapshot(cli, tmp_path, second)
    held = lock_files(cli.repo)
    assert len(held) == 1
    os.unlink(held[0])  # judged stale and removed
    gc_behind_the_snapshots_back(cli, tmp_path)
    pause.unlink()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 11, err
    assert b"saved" not in out and "Traceback" not in err.decode()
    snaps = cli("snapshots", "--json").json()
    assert [s["paths"] for s in snaps] == [[str(first)]]
    assert cli("check", "--read-data", check=False).code == 0
    target = tmp_path / "out"
    cli("restore", "latest", "--target", str(target))
    assert digest_tree(str(target) + str(first)) == digest_tree(str(first))


def test_snapshot_after_a_gc_it_did_not_see_saves_nothing(cli, tmp_path):
    first = tmp_path / "first"
    make_source(first, 3)
    cli("snapshot", str(first), "--tag", "keep")
    old = tmp_path / "old"
    make_source(old, 4)
    cli("snapshot", str(old))  # forgotten below: gc rewrites the index
    second = tmp_path / "second"
    shutil.copytree(old, second)  # deduplicates against the data gc is about to delete
    proc, pause = start_paused_snapshot(cli, tmp_path, second)
    (held,) = lock_files(cli.repo)
    aside = tmp_path / "lock-aside"
    os.rename(held, aside)  # gc does not see it ...
    gc_behind_the_snapshots_back(cli, tmp_path)
    os.rename(aside, held)  # ... and the snapshot's own lock still stands when it commits
    pause.unlink()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 11, err
    assert "ran while this backup was running" in err.decode()
    assert cli("check", "--read-data", check=False).code == 0
    assert [s["paths"] for s in cli("snapshots", "--json").json()] == [[str(first)]]
