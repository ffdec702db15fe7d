"""`dedupe repair index` through the real CLI: a damaged or lost index file is rebuilt from the
pack headers, a pack with a damaged header is reported and left alone, SIGKILL at every storage
call leaves a sound repository, and a real full disk is handled (the reserve, or exit 13 with
nothing lost)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dedupe.repo.repository import GC_PENDING, pack_name
from tests.clitools import KILL_ENTRY, Cli
from tests.support import (
    files_under,
    fill,
    free_bytes,
    open_repo,
    restore_digests,
    wait_for_new_file,
)


def make_repo(
    tmp_path: Path, root: Path | None = None, nights: int = 3, notes: int = 40
) -> tuple[Cli, dict]:
    """A repository of a few nightly snapshots (small files and a larger one); returns the CLI
    and every snapshot's restored digests."""
    where = root or tmp_path
    cli = Cli(str(where / "repo"), str(tmp_path / "cache"))
    cli("init", "--chunk-size", "64K")
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(11)
    for night in range(nights):
        for i in range(notes):
            (src / f"note{i:03d}.txt").write_bytes(rng.randbytes(rng.randint(500, 3000)))
        (src / "dump.sql").write_bytes(rng.randbytes(600_000))
        cli("snapshot", str(src), "--time", f"2026-05-0{night + 1}T22:00:00+00:00", "-q")
    return cli, restore_digests(cli.repo, str(tmp_path / "expected"))


def index_names(cli: Cli) -> set[str]:
    return set(os.listdir(os.path.join(cli.repo, "index")))


def flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def assert_sound(cli: Cli, tmp_path: Path, expected: dict) -> None:
    check = cli("check", "--read-data", "--json", check=False)
    assert check.code == 0, check.text + check.err
    assert restore_digests(cli.repo, str(tmp_path / "restored")) == expected


def test_damaged_index_file_is_rebuilt_then_check_and_gc_pass(tmp_path):
    cli, expected = make_repo(tmp_path)
    victim = sorted(index_names(cli))[0]
    flip(os.path.join(cli.repo, "index", victim), 60)
    check = cli("check", check=False)
    assert check.code == 14 and "'dedupe repair index'" in check.err, check.err
    gc = cli("gc", check=False)
    assert gc.code == 14 and "repair index" in gc.err, gc.err
    before = index_names(cli)
    dry = cli("repair", "index", "--dry-run")
    assert "would rebuild the index" in dry.text and "dry run" in dry.text
    assert index_names(cli) == before
    result = cli("repair", "index", "--json").json()
    assert result["packs"] == len([p for p in Path(cli.repo, "data").rglob("*") if p.is_file()])
    assert result["packs"] > 0 and result["blobs"] > 0
    assert result["index_files_written"] == 1 and result["index_files_removed"] == len(before)
    assert result["unreadable_packs"] == [] and result["damaged_index_files"] == [victim]
    assert not before & index_names(cli)
    assert_sound(cli, tmp_path, expected)
    cli("forget", "--keep-last", "2", "-q")
    assert cli("gc", "--max-unused", "0", "--json").json()["freed_bytes"] > 0
    kept = restore_digests(cli.repo, str(tmp_path / "kept"))
    assert len(kept) == 2 and all(expected[k] == v for k, v in kept.items())
    assert cli("check", "--read-data", "--json").json()["ok"]


def test_deleted_index_file_is_recovered(tmp_path):
    cli, expected = make_repo(tmp_path)
    for name in index_names(cli):
        os.unlink(os.path.join(cli.repo, "index", name))
    assert cli("check", check=False).code == 14  # every blob is missing from the index
    human = cli("repair", "index")
    assert "rebuilt the index from" in human.text
    assert_sound(cli, tmp_path, expected)


@pytest.mark.parametrize("index", ["kept", "lost"])
def test_pack_with_damaged_header_is_reported_and_the_rest_repaired(tmp_path, index):
    """kept: a current index file still names the pack: its entries (sealed) are kept, so every
    snapshot still restores. lost: no index names it: its blobs are left out."""
    cli, expected = make_repo(tmp_path)
    repo = open_repo(cli.repo)
    packs = {info.name: info.size for info in repo.storage.list("data/")}
    victim = sorted(packs)[0]
    flip(os.path.join(cli.repo, victim), packs[victim] - 10)  # inside the sealed header
    if index == "lost":
        for name in index_names(cli):
            os.unlink(os.path.join(cli.repo, "index", name))
    run = cli("repair", "index", "--json", check=False)
    assert run.code == 14, run.err
    assert "cannot be read" in run.err and "left in place" in run.err
    result = run.json()
    pack_id = victim.split("/")[-1]
    assert result["unreadable_packs"] == [pack_id]
    assert result["kept_from_index"] == ([pack_id] if index == "kept" else [])
    assert result["packs"] == len(packs) - (index == "lost")
    assert os.path.exists(os.path.join(cli.repo, victim))  # reported, never deleted
    repo = open_repo(cli.repo)
    named = {pack_name(p) for p in repo.index.pack_ids()}
    assert named == set(packs) - ({victim} if index == "lost" else set())
    if index == "kept":
        assert restore_digests(cli.repo, str(tmp_path / "restored")) == expected


def run_killed(cli: Cli, point: int, when: str, entries: int) -> subprocess.CompletedProcess:
    env = {"GC_TEST_KILL_AT": str(point), "GC_TEST_KILL_WHEN": when}
    return run_entry(cli, env, entries)


def run_entry(cli: Cli, env: dict[str, str], entries: int) -> subprocess.CompletedProcess:
    """`repair index` through the kill entry (tests/gc_kill_entry.py), with index files of at
    most `entries` entries (this module's own entry point, below)."""
    return subprocess.run(
        [sys.executable, __file__, "repair", "index"],
        env=cli.env | env | {"REPAIR_TEST_FILE_ENTRIES": str(entries)},
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _kill_round(baseline: str, work: Path, point: int, when: str, expected: dict) -> str:
    repo = str(work / "repo")
    shutil.copytree(baseline, repo)
    cli = Cli(repo, str(work / "cache"))
    killed = run_killed(cli, point, when, entries=40)
    what = f"kill {when} call {point}"
    if killed.returncode != -9:
        return f"{what}: repair was not killed (exit {killed.returncode}): {killed.stderr[-300:]!r}"
    for step in ("after the kill", "after repair ran again"):
        check = cli("check", "--read-data", "--json", check=False)
        if check.code != 0:
            return f"{what}, {step}: check failed: {check.text[-600:]}"
        if restore_digests(repo, str(work / "restore")) != expected:
            return f"{what}, {step}: a snapshot does not restore bit for bit"
        again = cli("repair", "index", "--json", check=False)
        if again.code != 0:
            return f"{what}: repair after the kill failed: {again.err}"
    shutil.rmtree(work, ignore_errors=True)
    return ""


def test_sigkill_repair_at_every_storage_call(tmp_path):
    """Kill repair right before and right after each of its puts and deletes (lock, every new
    index file, every old one deleted); each time check --read-data passes, every snapshot
    restores bit for bit, and repair run again finishes."""
    cli, expected = make_repo(tmp_path)
    os.unlink(os.path.join(cli.repo, "reserve"))  # repair writes it back: one more call
    baseline = str(tmp_path / "baseline")
    shutil.copytree(cli.repo, baseline)
    counted = Cli(str(tmp_path / "counted"), str(tmp_path / "c"))
    shutil.copytree(baseline, counted.repo)
    count_file = tmp_path / "calls"
    run = run_entry(counted, {"GC_TEST_COUNT_FILE": str(count_file)}, entries=40)
    assert run.returncode == 0, run.stderr
    total = int(count_file.read_text())
    # The lock, at least three index files, the old files deleted, reserve, the lock removed.
    assert len(index_names(counted)) >= 3 and total >= 8, total
    rounds = [(p, w) for p in range(1, total + 1) for w in ("before", "after")]
    with ThreadPoolExecutor(2) as pool:
        failures = pool.map(
            lambda job: _kill_round(baseline, tmp_path / f"k{job[0]}{job[1]}", *job, expected),
            rounds,
        )
        failures = [f for f in failures if f]
    assert not failures, failures


def test_killed_repair_of_a_damaged_index_finishes_when_run_again(tmp_path):
    cli, expected = make_repo(tmp_path)
    victim = sorted(index_names(cli))[0]
    flip(os.path.join(cli.repo, "index", victim), 60)
    before = index_names(cli)
    proc = subprocess.Popen(
        [sys.executable, KILL_ENTRY, "repair", "index"],
        env=cli.env | {"GC_TEST_SLOW": "0.2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Strike once the first new index file is durable (it supersedes nothing yet).
        folder = os.path.join(cli.repo, "index")
        old = files_under(folder)
        assert wait_for_new_file(folder, proc, old, timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert index_names(cli) - before  # a new file was written
    assert cli("repair", "index", "-q").code == 0
    assert_sound(cli, tmp_path, expected)
    assert not index_names(cli) & before


# --- a real full disk ----------------------------------------------------------------------------


def test_full_disk_repair_spends_the_reserve(tmp_path, small_disk):  # noqa: F811
    """One damaged index file (gc exits 14 on it) on a disk with not one byte free: repair takes
    its lock with the space reserve and writes the index, and gc runs again afterwards."""
    cli, expected = make_repo(tmp_path, root=small_disk, nights=2)
    flip(os.path.join(cli.repo, "index", sorted(index_names(cli))[0]), 60)
    fill(small_disk / "filler")
    assert free_bytes(small_disk) == 0
    human = cli("repair", "index")
    assert "space reserve was used" in human.text
    assert_sound(cli, tmp_path, expected)
    os.unlink(small_disk / "filler")
    assert cli("gc", "--json").json()["freed_bytes"] >= 0
    assert (small_disk / "repo" / "reserve").exists()  # gc wrote it back


def test_full_disk_without_room_for_the_index_exits_13_and_loses_nothing(tmp_path, small_disk):  # noqa: F811
    cli, expected = make_repo(tmp_path, root=small_disk, nights=1, notes=500)
    os.unlink(small_disk / "repo" / "reserve")
    before = {n: (small_disk / "repo" / "index" / n).read_bytes() for n in index_names(cli)}
    assert sum(len(d) for d in before.values()) > 16 << 10
    fill(small_disk / "filler")
    # Room for the lock (a page), not for the index.
    os.truncate(small_disk / "filler", os.path.getsize(small_disk / "filler") - (8 << 10))
    run = cli("repair", "index", check=False)
    assert run.code == 13, run.err
    assert "not enough free space to write the new index" in run.err
    assert "repair index' again" in run.err and "Traceback" not in run.err
    after = {n: (small_disk / "repo" / "index" / n).read_bytes() for n in index_names(cli)}
    assert after == before
    assert not os.listdir(small_disk / "repo" / "locks") or all(
        n.startswith(".") for n in os.listdir(small_disk / "repo" / "locks")
    )
    os.unlink(small_disk / "filler")
    assert_sound(cli, tmp_path, expected)
    assert not (small_disk / "repo" / GC_PENDING).exists()


if __name__ == "__main__":
    # `python tests/test_repair.py repair index`: tests/gc_kill_entry.py (its hooks and
    # environment) with repair's index files bounded to REPAIR_TEST_FILE_ENTRIES entries, so a
    # small repository gets an index of several files. Tests only: users cannot reach this.
    import runpy

    from dedupe.repo import repair

    repair.MAX_FILE_ENTRIES = int(os.environ["REPAIR_TEST_FILE_ENTRIES"])
    runpy.run_path(KILL_ENTRY, run_name="__main__")
