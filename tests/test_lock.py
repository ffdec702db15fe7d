"""Lock staleness and `Lock.verify`, on real lock objects in a real LocalStorage.

Ages are made with os.utime on the lock file: that is the storage's own clock, which is what
locks are now judged by (never the writer's recorded time, which may be skewed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedupe import codec
from dedupe.crypto.seal import Sealer
from dedupe.errors import RepositoryLocked
from dedupe.platform import process_start_time
from dedupe.repo import lock as lock_mod
from dedupe.repo.lock import STALE_AFTER, LockLost, MachineId
from dedupe.storage.local import LocalStorage
from tests.clitools import ROOT

KEY = bytes(range(32))
HOST = socket.gethostname()
HERE = lock_mod.this_machine()
linux_only = pytest.mark.skipif(
    not (HERE.boot_id and HERE.pid_ns), reason="needs Linux boot id and pid namespace"
)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[LocalStorage]:
    root = tmp_path / "repo"
    root.mkdir()
    storage = LocalStorage(str(root))
    yield storage
    storage.close()


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(KEY)


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def put_lock(
    storage: LocalStorage,
    sealer: Sealer,
    *,
    machine: MachineId,
    pid: int | None = None,
    exclusive: bool = True,
    recorded: float | None = None,
    age: float | None = None,
) -> str:
    """Write another process's lock; `age` sets its mtime that far back by the file system."""
    name = "locks/" + os.urandom(16).hex()
    pid = dead_pid() if pid is None else pid
    data = lock_mod.encode_lock(
        sealer,
        machine.host,
        pid,
        process_start_time(pid) or 12345,
        exclusive,
        machine=machine,
        when=recorded,
    )
    storage.put(name, data)
    if age is not None:
        set_age(storage, name, age)
    return name


def set_age(storage: LocalStorage, name: str, age: float) -> None:
    path = os.path.join(storage.root, *name.split("/"))
    when = os.stat(path).st_mtime - age
    os.utime(path, (when, when))


def blocks_exclusive(storage: LocalStorage, sealer: Sealer) -> bool:
    try:
        lock = lock_mod.acquire(storage, sealer, exclusive=True, sleep=lambda _s: None)
    except RepositoryLocked:
        return True
    lock.release()
    return False


# --- who may be judged by pid ------------------------------------------------------------------


@linux_only
@pytest.mark.parametrize(
    "other",
    [
        MachineId(HOST, HERE.boot_id, "pid:[1]"),  # a container with our host name
        MachineId(HOST, "another-boot", HERE.pid_ns),  # before a reboot: pids are reused
        MachineId(HOST),  # a system that records neither
    ],
    ids=["other-pid-namespace", "other-boot", "no-identity"],
)
def test_same_host_name_elsewhere_is_judged_by_age_not_pid(
    storage: LocalStorage, sealer: Sealer, other: MachineId
) -> None:
    name = put_lock(storage, sealer, machine=other)  # its pid is not running *here*
    assert blocks_exclusive(storage, sealer)
    [info], _ = lock_mod.list_locks(storage, sealer)
    assert not info.judged_by_pid(HERE)
    set_age(storage, name, STALE_AFTER + 60)
    assert not blocks_exclusive(storage, sealer)  # not refreshed for 31 minutes: stale


@linux_only
def test_our_own_pid_space_is_judged_by_pid(storage: LocalStorage, sealer: Sealer) -> None:
    put_lock(storage, sealer, machine=HERE)  # a dead pid of ours: stale at once
    assert not blocks_exclusive(storage, sealer)
    put_lock(storage, sealer, machine=HERE, pid=os.getpid(), age=10 * STALE_AFTER)
    locks, _ = lock_mod.list_locks(storage, sealer)
    assert sorted(info.pid == os.getpid() for info in locks) == [False, True]
    assert blocks_exclusive(storage, sealer)  # a live process, however old its object


def test_a_lock_without_machine_fields_still_decodes_and_is_judged_by_age(
    storage: LocalStorage, sealer: Sealer
) -> None:
    """Lock objects written before boot id and pid namespace were recorded."""
    old = {"v": 1, "host": HOST, "pid": dead_pid(), "pid_start": 1, "time": time.time()}
    storage.put("locks/" + "cd" * 16, sealer.seal(codec.pack(old | {"exclusive": True})))
    [info], broken = lock_mod.list_locks(storage, sealer)
    assert broken == [] and (info.boot_id, info.pid_ns) == ("", "")
    assert blocks_exclusive(storage, sealer)
    set_age(storage, info.name, STALE_AFTER + 60)
    assert not blocks_exclusive(storage, sealer)


@linux_only
@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root")
def test_a_lock_held_in_another_pid_namespace_blocks_gc(
    storage: LocalStorage, sealer: Sealer
) -> None:
    """A real holder in a new pid namespace (as in a container): its pid means nothing here."""
    holder = (
        "import sys; from dedupe.crypto.seal import Sealer; from dedupe.repo import lock; "
        "from dedupe.storage.local import LocalStorage; "
        "held = lock.acquire(LocalStorage(sys.argv[1]), Sealer(bytes(range(32))), False); "
        "print(held.name, flush=True); sys.stdin.read(); held.release()"
    )
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", holder, storage.root],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": ROOT},
    )
    try:
        assert proc.stdout is not None
        held = proc.stdout.readline().decode().strip()  # blocks until the lock is written
        [info], _ = lock_mod.list_locks(storage, sealer)
        assert info.name == held and info.pid_ns != HERE.pid_ns
        assert blocks_exclusive(storage, sealer)
        assert lock_mod.remove_stale(storage, sealer) == []
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(60)
    assert list(storage.list("locks/")) == []


# --- age by the storage's clock ----------------------------------------------------------------


def test_a_fresh_lock_from_a_skewed_clock_is_not_stale(
    storage: LocalStorage, sealer: Sealer
) -> None:
    """Its writer's clock is 31 minutes behind ours: what it recorded looks old, the storage
    says it was written just now."""
    other = MachineId("other-host", "b", "pid:[9]")
    put_lock(storage, sealer, machine=other, recorded=time.time() - STALE_AFTER - 60)
    assert blocks_exclusive(storage, sealer)
    assert lock_mod.remove_stale(storage, sealer) == []
    assert len(list(storage.list("locks/"))) == 1


def test_a_lock_not_rewritten_for_stale_after_is_stale(
    storage: LocalStorage, sealer: Sealer
) -> None:
    """And a recorded time from a clock running ahead does not keep it alive."""
    other = MachineId("other-host", "b", "pid:[9]")
    put_lock(storage, sealer, machine=other, recorded=time.time() + 3600, age=STALE_AFTER + 60)
    assert not blocks_exclusive(storage, sealer)
    removed = lock_mod.remove_stale(storage, sealer)
    assert len(removed) == 1 and "other-host" in removed[0]
    assert list(storage.list("locks/")) == []  # the probe went too


def test_a_lock_refreshed_every_five_minutes_never_looks_stale(
    storage: LocalStorage, sealer: Sealer
) -> None:
    other = MachineId("other-host", "b", "pid:[9]")
    name = put_lock(storage, sealer, machine=other, age=lock_mod.REFRESH_EVERY)
    assert blocks_exclusive(storage, sealer)
    set_age(storage, name, STALE_AFTER - lock_mod.REFRESH_EVERY - 60)  # 29 minutes
    assert blocks_exclusive(storage, sealer)


def test_refresh_rewrites_the_object_so_its_mtime_moves(
    storage: LocalStorage, sealer: Sealer
) -> None:
    held = lock_mod.acquire(storage, sealer, exclusive=False)
    try:
        set_age(storage, held.name, STALE_AFTER + 60)
        assert not judged_live_elsewhere(storage, sealer, held.name)
        held.refresh()
        assert judged_live_elsewhere(storage, sealer, held.name)
        assert held.lost is None
        held.verify()
    finally:
        held.release()
    assert list(storage.list("locks/")) == []


def judged_live_elsewhere(storage: LocalStorage, sealer: Sealer, name: str) -> bool:
    """How a process on another machine judges lock `name`, by a probe it just wrote."""
    storage.put("locks/probe", b"probe")
    storage_now = storage.stat("locks/probe").mtime
    storage.delete("locks/probe")
    [info] = [i for i in lock_mod.list_locks(storage, sealer)[0] if i.name == name]
    there = MachineId("other-host", "b", "pid:[9]")
    return not info.is_stale(time.time(), "other-host", here=there, storage_now=storage_now)


# --- verify ------------------------------------------------------------------------------------


def test_verify_passes_while_the_lock_stands(storage: LocalStorage, sealer: Sealer) -> None:
    other = MachineId("other-host", "b", "pid:[9]")
    put_lock(storage, sealer, machine=other, exclusive=False)  # another snapshot: no conflict
    put_lock(storage, sealer, machine=other, age=STALE_AFTER + 60)  # a dead gc's lock
    with lock_mod.acquire(storage, sealer, exclusive=False) as held:
        held.verify(sleep=lambda _s: None)


def test_verify_fails_after_another_process_deleted_our_lock(
    storage: LocalStorage, sealer: Sealer
) -> None:
    held = lock_mod.acquire(storage, sealer, exclusive=False)
    storage.delete(held.name)  # as a gc on a host that judged it stale, or 'dedupe unlock'
    with pytest.raises(LockLost) as lost:
        held.verify()
    assert lost.value.exit_code == 11 and "deleted" in str(lost.value)
    held.release()  # nothing to delete, no error


def test_verify_fails_when_our_lock_was_replaced(storage: LocalStorage, sealer: Sealer) -> None:
    held = lock_mod.acquire(storage, sealer, exclusive=False)
    other = MachineId("other-host", "b", "pid:[9]")
    storage.put(held.name, lock_mod.encode_lock(sealer, "other-host", 7, 7, False, machine=other))
    with pytest.raises(LockLost) as lost:
        held.verify()
    assert "replaced" in str(lost.value)
    held.release()
    assert len(list(storage.list("locks/"))) == 1  # not ours any more: left alone


def test_verify_fails_when_a_live_exclusive_lock_appeared(
    storage: LocalStorage, sealer: Sealer
) -> None:
    held = lock_mod.acquire(storage, sealer, exclusive=False)
    try:
        other = MachineId("other-host", "b", "pid:[9]")
        put_lock(storage, sealer, machine=other, exclusive=True)  # a gc that misjudged us
        with pytest.raises(LockLost) as lost:
            held.verify(sleep=lambda _s: None)
        assert "other-host" in str(lost.value) and lost.value.exit_code == 11
    finally:
        held.release()


def test_the_refresh_notices_a_vanished_lock_and_never_recreates_it(
    storage: LocalStorage, sealer: Sealer
) -> None:
    held = lock_mod.acquire(storage, sealer, exclusive=False)
    storage.delete(held.name)
    held.refresh()  # what the refresh thread does every REFRESH_EVERY seconds
    assert held.lost is not None and "deleted" in held.lost
    assert not storage.exists(held.name)
    with pytest.raises(LockLost):
        held.verify()
    held.release()


def test_the_refresh_thread_records_a_lost_lock(storage: LocalStorage, sealer: Sealer) -> None:
    held = lock_mod.Lock(storage, sealer, "locks/" + "ef" * 16, False, b"ours", refresh_every=0.01)
    deadline = time.monotonic() + 60
    while held.lost is None and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the thread's verdict, not timing it
    assert held.lost is not None
    with pytest.raises(LockLost):
        held.verify()
    held.release()


@linux_only
def test_this_machine_records_boot_and_pid_namespace() -> None:
    assert HERE.host == HOST
    assert len(HERE.boot_id) >= 32 and HERE.pid_ns.startswith("pid:[")
