"""gc through the real CLI: freeing forgotten snapshots, dry runs, SIGKILL at many points,
snapshots racing gc, and a real full tmpfs (ENOSPC during a snapshot, then forget + gc)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dedupe.repo import config as config_mod
from dedupe.repo.index import decode_index
from dedupe.repo.repository import GC_PENDING
from tests.clitools import KILL_ENTRY, Cli, initialized_cli
from tests.support import (
    all_stored_bytes,
    digest_tree,
    fill,
    free_bytes,
    open_repo,
    repo_size,
    restore_digests,
)


def shrink_packs(path: str) -> None:
    """1 MiB packs (the smallest a config allows), so a few MiB give gc many packs to handle."""
    repo = open_repo(path)
    settings = dataclasses.replace(repo.settings, pack_size=1 << 20)
    repo.storage.put("config", config_mod.encode_config(settings, repo.sealer))


@dataclass
class History:
    cli: Cli
    repo: str
    expected: dict[str, dict[str, str]]  # kept snapshot id -> digests of the restored files
    forgotten_bytes: int


def write_random(path: Path, size: int, rng: random.Random) -> None:
    path.write_bytes(rng.randbytes(size))


def make_history(
    tmp_path: Path, files: int = 24, size: int = 90_000, change_all: bool = False
) -> History:
    """Four nightly snapshots of a changing folder; forget keeps the last two. With
    `change_all`, every file changes every night, so the forgotten nights' packs are wholly
    garbage (otherwise packs mix live and dead blobs at random)."""
    cli = initialized_cli(tmp_path)
    shrink_packs(cli.repo)
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(42)
    for i in range(files):
        write_random(src / f"f{i:03d}", size, rng)
    for night in range(4):
        if night:
            changed = files if change_all else files // 3  # a third of the files change
            for i in rng.sample(range(files), changed):
                write_random(src / f"f{i:03d}", size, rng)
        cli("snapshot", str(src), "--time", f"2026-03-0{night + 2}T22:00:00+00:00", "-q")
    before = repo_size(cli.repo)
    cli("forget", "--keep-last", "2", "-q")
    expected = restore_digests(cli.repo, str(tmp_path / "expected"))
    assert len(expected) == 2
    return History(cli, cli.repo, expected, before - repo_size(cli.repo))


def run_kill_entry(
    cli: Cli, *args: str, env: dict[str, str], file_entries: int = 0
) -> subprocess.CompletedProcess:
    """The kill entry; with `file_entries`, gc's index files hold at most that many entries
    (through this module's own entry point, below)."""
    entry = [__file__] if file_entries else [KILL_ENTRY]
    env = env | ({"GC_TEST_FILE_ENTRIES": str(file_entries)} if file_entries else {})
    return subprocess.run(
        [sys.executable, *entry, *args],
        env=cli.env | env,
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_gc_frees_forgotten_space_and_kept_snapshots_restore(tmp_path):
    h = make_history(tmp_path)
    before = repo_size(h.repo)
    dry = h.cli("gc", "--dry-run", "--json").json()
    assert repo_size(h.repo) == before  # a dry run changes nothing
    result = h.cli("gc", "--json").json()
    assert {"freed_bytes", "stored_bytes_before", "stored_bytes_after"} <= result.keys()
    assert result["freed_bytes"] > 500_000 and result["packs_deleted"] > 0
    assert result["stored_bytes_before"] - result["stored_bytes_after"] == result["freed_bytes"]
    # The dry run announced exactly what the real run did.
    for key in ("packs_deleted", "packs_rewritten"):
        assert dry[key] == result[key], (key, dry, result)
    # Freed bytes are an estimate before the run (rewritten packs and index files may differ).
    assert abs(dry["freed_bytes"] - result["freed_bytes"]) <= 0.05 * result["freed_bytes"] + 65536
    assert repo_size(h.repo) <= before - result["freed_bytes"] + 8192  # the reserve comes back
    assert h.cli("check", "--read-data", "--json").json()["ok"]
    assert restore_digests(h.repo, str(tmp_path / "after")) == h.expected
    # Through the real restore command too, for one snapshot.
    snap_id = next(iter(h.expected))
    h.cli("restore", snap_id, "--target", str(tmp_path / "cli-restore"))
    assert digest_tree(str(tmp_path / "cli-restore")) == h.expected[snap_id]
    zero = h.cli("gc", "--max-unused", "0").text
    assert "freed" in zero and "still unused: 0 B" in zero
    assert h.cli("gc", "--json").json()["freed_bytes"] == 0


def test_gc_writes_its_index_as_bounded_files_and_kept_snapshots_restore(tmp_path):
    """With the bound at 8 entries, gc's index is many files, none over the bound unless it
    names a single pack; the real CLI then checks, restores, snapshots and collects again."""
    h = make_history(tmp_path, change_all=True)  # whole garbage packs: the index is rewritten
    before = set(os.listdir(os.path.join(h.repo, "index")))
    run = run_kill_entry(h.cli, "gc", "--max-unused", "0", "--json", env={}, file_entries=8)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["freed_bytes"] > 500_000
    repo = open_repo(h.repo)
    files = [
        decode_index(repo.storage.get(i.name), repo.sealer, i.name)
        for i in repo.storage.list("index/")
    ]
    assert len(files) >= 3
    assert not before & {i.name.split("/")[-1] for i in repo.storage.list("index/")}
    for f in files:
        assert sum(len(c.ids) // 32 for c in f.columns) <= 8 or len(f.columns) == 1
    names = {i.name.split("/")[-1] for i in repo.storage.list("index/")}
    assert not names & {s for f in files for s in f.supersedes}  # every file is current
    assert h.cli("check", "--read-data", "--json").json()["ok"]
    assert restore_digests(h.repo, str(tmp_path / "after")) == h.expected
    for snap_id, digests in h.expected.items():
        target = tmp_path / f"cli-{snap_id[:8]}"
        h.cli("restore", snap_id, "--target", str(target))
        assert digest_tree(str(target)) == digests
    (tmp_path / "src" / "late").write_bytes(random.Random(8).randbytes(200_000))
    h.cli("snapshot", str(tmp_path / "src"), "-q")
    assert h.cli("gc", "--json").json()["freed_bytes"] == 0
    assert h.cli("check", "--read-data", "--json").json()["ok"]


def test_gc_dry_run_changes_nothing(tmp_path):
    h = make_history(tmp_path, files=8)
    before = all_stored_bytes(h.repo)
    out = h.cli("gc", "--dry-run", "--max-unused", "0").text
    assert "would free" in out and "nothing was changed" in out
    assert all_stored_bytes(h.repo) == before
    assert h.cli("gc", "--dry-run", "--json").json()["dry_run"] is True
    bad = h.cli("gc", "--max-unused", "150", check=False)
    assert bad.code == 2


def _kill_round(
    h: History,
    baseline: str,
    work: Path,
    point: int,
    when: str,
    env: dict[str, str],
    file_entries: int = 0,
) -> str:
    """Copy the baseline, kill gc at `point`, verify, finish with gc. Returns a failure or ''."""
    repo = str(work / "repo")
    shutil.copytree(baseline, repo)
    cli = Cli(repo, str(work / "cache"))
    killed = run_kill_entry(
        cli,
        "gc",
        "--max-unused",
        "0",
        env=env | {"GC_TEST_KILL_AT": str(point), "GC_TEST_KILL_WHEN": when},
        file_entries=file_entries,
    )
    what = f"kill {when} call {point}"
    if killed.returncode != -9:
        return f"{what}: gc was not killed (exit {killed.returncode}): {killed.stderr[-300:]!r}"
    check = cli("check", "--read-data", "--json", check=False)
    if check.code != 0:
        return f"{what}: check failed: {check.text[-600:]}"
    if restore_digests(repo, str(work / "restore")) != h.expected:
        return f"{what}: a kept snapshot does not restore bit for bit"
    again = cli("gc", "--max-unused", "0", "--json", check=False)
    if again.code != 0:
        return f"{what}: gc after the kill failed: {again.err}"
    if os.path.exists(os.path.join(repo, GC_PENDING)):
        return f"{what}: the gc-pending marker survived a finished gc"
    if cli("check", "--read-data", "--json", check=False).code != 0:
        return f"{what}: check failed after gc finished"
    if restore_digests(repo, str(work / "restore")) != h.expected:
        return f"{what}: a kept snapshot does not restore after gc finished"
    shutil.rmtree(work, ignore_errors=True)
    return ""


def _spread(total: int, count: int) -> list[int]:
    return sorted({1 + round(i * (total - 1) / max(1, count - 1)) for i in range(count)})


@pytest.mark.parametrize(
    ("full_disk", "change_all", "file_entries"),
    [(False, False, 0), (True, True, 0), (False, False, 8), (False, True, 8), (True, True, 8)],
    ids=["normal", "full-disk-order", "split-repack", "split-rewrite", "split-full-disk"],
)
def test_sigkill_gc_at_many_points(tmp_path, full_disk, change_all, file_entries):
    """Kill gc right before and right after mutating storage calls spread over the whole run
    (including the lock, marker, index and pack writes and every delete); each time every kept
    snapshot restores, check --read-data passes, and gc run again finishes the job. With
    `file_entries`, gc writes its index as many small files and is killed at every call, in
    particular between those files (`change_all`: whole garbage packs, so all are rewritten)."""
    h = make_history(tmp_path, files=12, change_all=change_all)
    baseline = str(tmp_path / "baseline")
    shutil.copytree(h.repo, baseline)
    env = {"GC_TEST_FREE": "0"} if full_disk else {}
    count_file = str(tmp_path / "calls")
    counted = str(tmp_path / "counted")
    shutil.copytree(baseline, counted)
    run = run_kill_entry(
        Cli(counted, str(tmp_path / "c")),
        "gc",
        "--max-unused",
        "0",
        env=env | {"GC_TEST_COUNT_FILE": count_file},
        file_entries=file_entries,
    )
    assert run.returncode == 0, run.stderr
    total = int(Path(count_file).read_text())
    # Lock, marker, new index, at least one pack and one index deleted, marker and lock removed.
    # The exact count depends on where the repository's secret-seeded chunker cut (9-14 seen).
    assert total >= 7, total
    if file_entries:
        assert len(os.listdir(os.path.join(counted, "index"))) >= 3
    # At least 20 points on the common path (every point, before and after, when gc makes fewer
    # calls); the full-disk order differs only in its first steps (marker, deletes, index), so
    # fewer points cover it.
    before, after = (7, 5) if full_disk else (12, 10)
    if file_entries:
        before = after = total
    rounds = [(p, "before") for p in _spread(total, before)]
    rounds += [(p, "after") for p in _spread(total, after)]
    assert len(rounds) >= min(10 if full_disk else 20, 2 * total)
    with ThreadPoolExecutor(2) as pool:
        failures = pool.map(
            lambda job: _kill_round(
                h, baseline, tmp_path / f"k{job[0]}{job[1]}", *job, env, file_entries
            ),
            rounds,
        )
        failures = [f for f in failures if f]
    assert not failures, failures


def test_snapshot_started_during_gc_is_never_broken(tmp_path):
    h = make_history(tmp_path, files=12)
    src = tmp_path / "src"
    (src / "new-during-gc").write_bytes(random.Random(5).randbytes(300_000))
    # gc pauses after its first storage write (its exclusive lock) until `pause` is removed: a
    # snapshot started then must meet the lock however slow this machine is (a fixed window of
    # gc's sleeps could close before a snapshot process on a busy machine reached its lock).
    pause = tmp_path / "gc-paused"
    pause.touch()
    gc_proc = subprocess.Popen(
        [sys.executable, KILL_ENTRY, "gc", "--max-unused", "0"],
        env=h.cli.env | {"GC_TEST_SLOW": "0.1", "GC_TEST_PAUSE_FILE": str(pause)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Start snapshotting only once gc holds its lock (on a busy machine a snapshot started at
    # once could take its shared lock first, and gc would rightly exit 11).
    locks = os.path.join(h.repo, "locks")
    try:
        deadline = time.monotonic() + 120
        while gc_proc.poll() is None and time.monotonic() < deadline:
            if [n for n in os.listdir(locks) if not n.startswith(".")]:  # not a temporary
                break
            time.sleep(0.02)
        assert gc_proc.poll() is None, gc_proc.stderr.read()
        codes = [h.cli("snapshot", str(src), "-q", check=False).code]
        assert codes == [11]  # the lock kept them apart
        pause.unlink()  # gc goes on (0.1 s a write); snapshots keep trying while it runs
        deadline = time.monotonic() + 120
        while gc_proc.poll() is None and time.monotonic() < deadline:
            codes.append(h.cli("snapshot", str(src), "-q", check=False).code)
            time.sleep(0.1)
        assert gc_proc.wait(timeout=120) == 0, gc_proc.stderr.read()
    finally:
        pause.unlink(missing_ok=True)
        if gc_proc.poll() is None:
            gc_proc.kill()
            gc_proc.wait()
    assert set(codes) <= {0, 11}, codes
    assert h.cli("snapshot", str(src), "-q", check=False).code == 0
    assert h.cli("check", "--read-data", "--json").json()["ok"]
    restored = restore_digests(h.repo, str(tmp_path / "r"))
    for snap_id, digests in h.expected.items():
        assert restored[snap_id] == digests
    assert len(restored) >= 3


# --- a real full disk ----------------------------------------------------------------------------


def test_full_disk_snapshot_exits_13_then_forget_and_gc_free_space(tmp_path, small_disk):
    cli = Cli(str(small_disk / "repo"), str(tmp_path / "cache"))
    cli("init")
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(9)
    for night in range(3):
        write_random(src / "dump.sql", 8_000_000, rng)
        cli("snapshot", str(src), "--time", f"2026-04-0{night + 1}T22:00:00+00:00", "-q")
    expected = restore_digests(cli.repo, str(tmp_path / "expected"))
    # Leave a little room, then back up more than that: ENOSPC in the middle of the packs.
    filler = small_disk / "filler"
    fill(filler)
    os.truncate(filler, os.path.getsize(filler) - (3 << 20))
    packs_before = {p.name for p in (small_disk / "repo" / "data").rglob("*") if p.is_file()}
    write_random(src / "dump.sql", 12_000_000, rng)
    failed = cli("snapshot", str(src), "-q", check=False)
    assert failed.code == 13, failed.err
    assert "forget" in failed.err and "gc" in failed.err
    leftovers = {p.name for p in (small_disk / "repo").rglob("*") if p.is_file()}
    assert not [n for n in leftovers if n.startswith(".tmp-")]
    assert {p.name for p in (small_disk / "repo" / "data").rglob("*") if p.is_file()} == (
        packs_before
    )
    assert restore_digests(cli.repo, str(tmp_path / "r1")) == expected
    # Now truly full: not one byte free.
    fill(filler)
    assert free_bytes(small_disk) == 0
    assert cli("snapshot", str(src), "-q", check=False).code == 13
    # hold frees nothing, so it must not spend the reserve that forget and gc need.
    assert cli("hold", "latest", "--reason", "audit", check=False).code == 13
    assert (small_disk / "repo" / "reserve").exists()
    cli("forget", "--keep-last", "1", "-q")
    result = cli("gc", "--json").json()
    assert result["freed_bytes"] >= 14_000_000, result
    assert free_bytes(small_disk) >= 14_000_000
    kept = restore_digests(cli.repo, str(tmp_path / "r2"))
    assert len(kept) == 1 and kept == {k: v for k, v in expected.items() if k in kept}
    assert cli("check", "--read-data", "--json").json()["ok"]
    write_random(src / "dump.sql", 4_000_000, rng)
    cli("snapshot", str(src), "-q")
    assert cli("check", "--json").json()["ok"]


if __name__ == "__main__":
    # `python tests/test_e2e_gc.py gc ...`: tests/gc_kill_entry.py (its hooks and environment)
    # with gc's index files bounded to GC_TEST_FILE_ENTRIES entries, so that small test
    # repositories get an index of many files. Tests only: users cannot reach this.
    import runpy

    from dedupe.gc import indexfiles

    indexfiles.MAX_FILE_ENTRIES = int(os.environ["GC_TEST_FILE_ENTRIES"])
    runpy.run_path(KILL_ENTRY, run_name="__main__")
