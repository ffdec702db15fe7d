"""Crash safety and locking through the real CLI: SIGKILL mid-snapshot, concurrent snapshots,
locks held by live and dead processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest

from dedupe.repo import lock as lock_mod
from tests.support import digest_tree, files_under, open_repo, wait_for_new_file


def test_sigkill_during_snapshot_keeps_earlier_snapshots(cli, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    for i in range(20):
        (first / f"doc{i}.txt").write_bytes(random.Random(i).randbytes(20_000))
    first_id = cli("snapshot", str(first), "--json").json()["id"]
    big = tmp_path / "big"
    big.mkdir()
    rng = random.Random(99)
    for i in range(6):
        (big / f"scan{i}.bin").write_bytes(rng.randbytes(12 << 20))
    killed = 0
    packs = os.path.join(cli.repo, "data")
    # The first kill waits for a new pack on disk (the snapshot is then surely mid-way, however
    # fast the machine); the others land at fixed moments, wherever they fall.
    for delay in ("first pack", 0.35, 0.6, 0.9):
        before = files_under(packs)
        proc = cli.popen("snapshot", str(big), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if delay == "first pack":
            wait_for_new_file(packs, proc, before)
        else:
            time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        target = tmp_path / f"restore-{delay}"
        cli("restore", first_id, "--target", str(target))
        assert digest_tree(str(target) + str(first)) == digest_tree(str(first))
    assert killed >= 1, "the snapshot finished before any kill: make the data bigger"
    # The killed processes' locks are stale: an exclusive lock can still be taken, and a new
    # snapshot of the same data completes and restores bit for bit.
    sid = cli("snapshot", str(big), "--json").json()["id"]
    target = tmp_path / "restore-big"
    cli("restore", sid, "--target", str(target))
    assert digest_tree(str(target) + str(big)) == digest_tree(str(big))
    repo = open_repo(cli.repo)
    with repo.lock(exclusive=True):
        pass
    removed = cli("unlock", "--json").json()["removed"]
    assert len(lock_mod.list_locks(repo.storage, repo.sealer)[0]) == 0
    assert isinstance(removed, list)


def test_two_concurrent_snapshots_both_land(cli, tmp_path):
    sources = []
    for n in range(2):
        src = tmp_path / f"src{n}"
        src.mkdir()
        rng = random.Random(n)
        for i in range(4):
            (src / f"f{i}").write_bytes(rng.randbytes(3 << 20))
        sources.append(src)
    procs = [
        cli.popen("snapshot", str(src), "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for src in sources
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    snaps = cli("snapshots", "--json").json()
    assert len(snaps) == 2
    for snap in snaps:
        target = tmp_path / f"restore-{snap['id'][:8]}"
        cli("restore", snap["id"], "--target", str(target))
        src = snap["paths"][0]
        assert digest_tree(str(target) + src) == digest_tree(src)


def test_exclusive_lock_blocks_snapshot_with_exit_11(cli, tmp_path):
    f = tmp_path / "f"
    f.write_text("data")
    repo = open_repo(cli.repo)
    with repo.lock(exclusive=True):
        result = cli("snapshot", str(f), check=False)
        assert result.code == 11
        assert "locked" in result.err and "Traceback" not in result.err
        # A live lock is not stale: unlock leaves it alone.
        cli("unlock")
        assert len(list(repo.storage.list("locks/"))) == 1
    assert cli("snapshot", str(f)).code == 0


def test_shared_lock_allows_snapshot_but_blocks_exclusive(cli, tmp_path):
    repo = open_repo(cli.repo)
    with repo.lock(exclusive=False):
        with pytest.raises(Exception) as info:
            lock_mod.acquire(repo.storage, repo.sealer, exclusive=True)
        assert info.value.exit_code == 11
        other = lock_mod.acquire(repo.storage, repo.sealer, exclusive=False)
        other.release()


def test_lock_of_dead_process_is_stale_and_unlock_removes_it(cli, tmp_path):
    repo = open_repo(cli.repo)
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    data = lock_mod.encode_lock(
        repo.sealer, __import__("socket").gethostname(), child.pid, 12345, True
    )
    repo.storage.put("locks/" + "ab" * 16, data)
    f = tmp_path / "f"
    f.write_text("x")
    assert cli("snapshot", str(f)).code == 0  # a stale exclusive lock does not block
    removed = cli("unlock", "--json").json()["removed"]
    assert len(removed) == 1 and str(child.pid) in removed[0]
    assert list(repo.storage.list("locks/")) == []
