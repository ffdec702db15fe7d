"""Helpers shared by the test files, in one place (test files import from here, from
tests/clitools.py for the CLI runner, and from tests/conftest.py for fixtures, never from one
another): the cheap KDF setting, opening a repository in-process, trees to back up and compare,
and what a repository's files hold on disk."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dedupe.crypto import kdf

if TYPE_CHECKING:
    from dedupe.repo.repository import Repository

# The library is imported inside the functions that open a repository: tests/cli_entry.py
# imports this module for CHEAP_KDF, and every CLI run of the tests should start as fast as
# `dedupe` itself does.

PASSWORD = "correct horse battery staple"

# Tests only: Argon2id at its minimum cost for keys made by tests. No user-facing way reaches it;
# tests/cli_entry.py and the `cheap_kdf` fixture (tests/conftest.py) put it in place.
CHEAP_KDF = kdf.KdfParams(
    ops=kdf.pwhash.argon2id.OPSLIMIT_MIN, mem=kdf.pwhash.argon2id.MEMLIMIT_MIN
)


# --- a repository opened in this process -----------------------------------------------------


def open_repo(path: str, cache: str | None = None, password: str | bytes = PASSWORD) -> Repository:
    """The local repository at `path`, unlocked; its index cache lives in `cache` (None: no
    cache, so nothing is written outside the test's folders)."""
    from dedupe.repo.repository import Repository
    from dedupe.storage.local import LocalStorage

    secret = password.encode() if isinstance(password, str) else password
    repo = Repository.open(LocalStorage(path), lambda: secret)
    repo.cache_dir = cache
    return repo


def restore_digests(repo_path: str, target: str) -> dict[str, dict[str, str]]:
    """snapshot id -> digests of its restored files (restored with the library, bit for bit)."""
    from dedupe.repo.manifests import load_all
    from dedupe.restore.restorer import Restorer

    repo = open_repo(repo_path)
    out = {}
    for snap in load_all(repo):
        where = os.path.join(target, snap.id[:12])
        Restorer(repo, where).restore(snap.tree)
        out[snap.id] = digest_tree(where)
    shutil.rmtree(target, ignore_errors=True)
    repo.storage.close()  # cached pack descriptors would keep deleted packs' space in use
    return out


def save_attacker_snapshot(repo: Repository, root: bytes) -> str:
    """Save a manifest naming `root` as its tree, as an attacker with the password could (host
    "attacker", path /x); its id."""
    from datetime import UTC, datetime

    from dedupe.model.snapshot import Snapshot
    from dedupe.repo import manifests

    snap = Snapshot(
        id=manifests.new_snapshot_id(),
        time=datetime(2026, 1, 1, tzinfo=UTC),
        host="attacker",
        user="eve",
        paths=(b"/x",),
        tags=(),
        tree=root,
    )
    manifests.save(repo, snap)
    return snap.id


# --- trees to back up and compare ------------------------------------------------------------


def make_tree(root: str) -> None:
    """A varied tree: unicode and non-UTF-8 names, modes, mtimes, symlinks, empty things."""
    os.makedirs(root)
    broot = os.fsencode(root)
    with open(os.path.join(root, "plain.txt"), "wb") as f:
        f.write(b"hello world\n" * 100)
    with open(os.path.join(root, "Ünïcødé файл.txt"), "wb") as f:
        f.write("grüße\n".encode())
    with open(os.path.join(broot, b"latin1-\xe9t\xe9.bin"), "wb") as f:
        f.write(b"\x00\x01\x02" * 1000)
    os.makedirs(os.path.join(root, "empty-dir"))
    open(os.path.join(root, "empty-file"), "wb").close()
    os.makedirs(os.path.join(root, "deep", "er", "est"))
    with open(os.path.join(root, "deep", "er", "est", "random.bin"), "wb") as f:
        f.write(random.Random(7).randbytes(700_000))
    os.symlink("plain.txt", os.path.join(root, "link-to-plain"))
    os.symlink("/nonexistent/target", os.path.join(root, "dangling"))
    script = os.path.join(root, "run.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\necho hi\n")
    os.chmod(script, 0o750)
    secret = os.path.join(root, "secret.key")
    with open(secret, "w") as f:
        f.write("private\n")
    os.chmod(secret, 0o600)
    os.utime(os.path.join(root, "plain.txt"), ns=(1_600_000_000_123_456_789,) * 2)
    os.chmod(os.path.join(root, "deep", "er"), 0o711)
    os.utime(os.path.join(root, "deep"), ns=(1_500_000_000_000_000_000,) * 2)


def assert_same_tree(a: str, b: str) -> None:
    """Bit-for-bit contents, types, modes, mtimes (ns for files), symlink targets."""
    a_entries = sorted(os.listdir(os.fsencode(a)))
    b_entries = sorted(os.listdir(os.fsencode(b)))
    assert a_entries == b_entries
    for name in a_entries:
        pa, pb = os.path.join(os.fsencode(a), name), os.path.join(os.fsencode(b), name)
        sa, sb = os.lstat(pa), os.lstat(pb)
        assert stat.S_IFMT(sa.st_mode) == stat.S_IFMT(sb.st_mode), name
        if stat.S_ISLNK(sa.st_mode):
            assert os.readlink(pa) == os.readlink(pb)
            continue
        assert stat.S_IMODE(sa.st_mode) == stat.S_IMODE(sb.st_mode), name
        assert sa.st_mtime_ns == sb.st_mtime_ns, name
        assert (sa.st_uid, sa.st_gid) == (sb.st_uid, sb.st_gid), name
        if stat.S_ISDIR(sa.st_mode):
            assert_same_tree(os.fsdecode(pa), os.fsdecode(pb))
        else:
            with open(pa, "rb") as fa, open(pb, "rb") as fb:
                assert fa.read() == fb.read(), name


def digest_tree(root: str) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root` (to compare restores)."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


# --- what a repository's folder holds --------------------------------------------------------


def repo_size(repo: str) -> int:
    total = 0
    for folder, _dirs, files in os.walk(repo):
        for name in files:
            total += os.path.getsize(os.path.join(folder, name))
    return total


def all_stored_bytes(repo: str) -> bytes:
    chunks = []
    for folder, _dirs, files in os.walk(repo):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                chunks.append(f.read())
    return b"".join(chunks)


def files_under(folder: str) -> set[str]:
    """Every file below `folder` (none if it does not exist)."""
    return {os.path.join(d, f) for d, _s, files in os.walk(folder) for f in files}


def wait_for_new_file(
    folder: str, proc: subprocess.Popen, before: set[str], timeout: float = 60
) -> bool:
    """Poll until a file not in `before` appears below `folder`: True then, False if `proc`
    ended or the time ran out first. Kill tests use it to strike mid-write on any machine."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if files_under(folder) - before:
            return True
        time.sleep(0.002)
    return False


# --- a full disk -----------------------------------------------------------------------------


def fill(path: Path) -> None:
    """Write `path` until the disk is full (ENOSPC), keeping what fitted."""
    with open(path, "ab", buffering=0) as f:
        for size in (1 << 20, 64 << 10, 4096, 512, 1):
            block = os.urandom(size)
            try:
                while True:
                    f.write(block)
            except OSError:
                continue


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# --- a small real disk -------------------------------------------------------------------------


def mount_tmpfs(point: Path, size: str = "64m") -> None:
    """Mount a real tmpfs of `size` at the existing folder `point` (needs root: the test is
    skipped without, and fails in CI). The caller unmounts it (`umount -l`)."""
    import pytest

    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs in CI: {proc.stderr}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {proc.stderr.strip()}")


def helper_pids(pid: int) -> list[int]:
    """Pids of running snapshot helper processes (`dedupe.backup.offload`) whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/status") as f:
                ppid = next(int(ln.split()[1]) for ln in f if ln.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if b"dedupe.backup.offload" in cmdline and ppid == pid:
            found.append(int(entry))
    return found


def assert_stopped_restore_is_clean(src: Path, target: Path, scan: Path | None = None) -> dict:
    """After a restore of `src` under `target` stopped part way (a full disk): no temporary
    file is left under `scan` (default `target`), some but not all files are there, and every
    file under a real name is complete. The restored files' digests."""
    leftovers = [
        os.path.join(folder, name)
        for folder, _dirs, names in os.walk(scan or target)
        for name in names
        if name.startswith(".dedupe-restore-")
    ]
    assert leftovers == []
    whole = digest_tree(str(src))
    restored = digest_tree(str(target) + str(src))
    assert len(restored) < len(whole)
    for name, digest in restored.items():  # what is there under a real name is complete
        assert whole[name] == digest
    return restored
