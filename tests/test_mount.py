"""`dedupe mount` on real FUSE: the real CLI mounts a real repository in a subprocess, and the
tests read, list and write through the kernel as any program would.

Covered: files and folders read back bit for bit with their modes, times and symlinks; `latest`,
tags and sources; nothing writable (EROFS); a large file streamed with bounded memory (the mount
process's peak RSS, from /proc); SIGINT, SIGTERM and `umount` end it cleanly; a damaged blob is
EIO for the reader and a message, and the mount lives on; hostile trees are refused as `ls`
refuses them. The tests that mount are skipped, with the reason, only where the machine has no
FUSE (no /dev/fuse or no fusermount3); the mount-point checks and the names run everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dedupe import codec
from dedupe.errors import DamageError
from dedupe.model.snapshot import Snapshot
from dedupe.mount import layout
from dedupe.mount.cache import BlobCache, FileLayout
from dedupe.repo import manifests, treewalk
from dedupe.repo.repository import pack_name
from dedupe.repo.writer import BlobWriter
from tests.clitools import Cli, initialized_cli
from tests.support import assert_same_tree, make_tree, open_repo, save_attacker_snapshot

_NO_FUSE = (
    "no /dev/fuse on this machine"
    if not os.path.exists("/dev/fuse")
    else "no fusermount3 (Debian package fuse3)"
    if shutil.which("fusermount3") is None
    else None
)
needs_fuse = pytest.mark.skipif(_NO_FUSE is not None, reason=f"FUSE is absent: {_NO_FUSE}")

DEADLINE = 60.0  # seconds for a mount or an unmount on a loaded machine; normally well under 1


def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Mount:
    """A running `dedupe mount` (its stdout and stderr go to files: a full pipe would stall the
    filesystem)."""

    def __init__(self, cli: Cli, where: Path, logs: Path) -> None:
        self.where = where
        self.out_path, self.err_path = logs / "mount.out", logs / "mount.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = cli.popen(
                "mount", str(where), stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        # The kernel mount comes first; the message once libfuse has started serving it.
        mounted = wait_until(
            lambda: (
                (os.path.ismount(where) and "mounted at" in self.out())
                or self.proc.poll() is not None
            )
        )
        assert mounted and os.path.ismount(where), f"not mounted: {self.err()}"

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=DEADLINE)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if in_mount_table(self.where):  # only after a failure: leave no mount behind
            subprocess.run(["fusermount3", "-u", "-z", str(self.where)], check=False)


def in_mount_table(where: Path) -> bool:
    """Mounted, also when its server is gone (where os.path.ismount says False: ENOTCONN)."""
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(where) for line in f)


@contextmanager
def mounted(cli: Cli, tmp_path: Path) -> Iterator[Mount]:
    where = tmp_path / "mnt"
    where.mkdir()
    mount = Mount(cli, where, tmp_path)
    try:
        yield mount
    finally:
        mount.cleanup()


def snapshot_ids(cli: Cli) -> list[str]:
    return [s["id"] for s in cli("snapshots", "--json").json()]


def folder_of(mnt: Path, snapshot_id: str) -> Path:
    (name,) = [n for n in os.listdir(mnt / "snapshots") if n.endswith("_" + snapshot_id[:8])]
    return mnt / "snapshots" / name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# --- reading ------------------------------------------------------------------------------------


@needs_fuse
def test_snapshots_read_back_exactly_with_latest_tags_and_sources(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(str(src))
    cli = initialized_cli(tmp_path)
    cli("snapshot", "--tag", "nightly", str(src))
    (src / "plain.txt").write_bytes(b"changed\n")
    cli("snapshot", "--tag", "nightly", "--tag", "month-end", str(src))
    first, second = snapshot_ids(cli)
    with mounted(cli, tmp_path) as mount:
        mnt = mount.where
        assert "mounted at" in mount.out() and "umount" in mount.out()
        assert sorted(os.listdir(mnt)) == ["latest", "snapshots", "sources", "tags"]
        assert len(os.listdir(mnt / "snapshots")) == 2
        # The newest snapshot, every byte, mode, time, owner and symlink as backed up.
        inside = str(src).lstrip("/")
        assert_same_tree(str(src), str(folder_of(mnt, second) / inside))
        assert (folder_of(mnt, first) / inside / "plain.txt").read_bytes() == (
            b"hello world\n" * 100
        )
        assert os.readlink(mnt / "latest") == "snapshots/" + folder_of(mnt, second).name
        assert (mnt / "latest" / inside / "plain.txt").read_bytes() == b"changed\n"
        assert os.readlink(folder_of(mnt, second) / inside / "dangling") == "/nonexistent/target"
        # Tags and sources: symlinks to the snapshot folders, `latest` the newest of each.
        assert sorted(os.listdir(mnt / "tags")) == ["month-end", "nightly"]
        assert sorted(os.listdir(mnt / "tags" / "nightly")) == sorted(
            [folder_of(mnt, first).name, folder_of(mnt, second).name, "latest"]
        )
        assert os.readlink(mnt / "tags" / "month-end" / "latest") == (
            f"../../snapshots/{folder_of(mnt, second).name}"
        )
        (source,) = os.listdir(mnt / "sources")
        assert source == inside.replace("/", "_")
        assert (mnt / "sources" / source / "latest" / inside / "plain.txt").read_bytes() == (
            b"changed\n"
        )
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / "snapshots" / "no-such-snapshot")
        assert mount.stop() == 0
    assert "Traceback" not in mount.err()


@needs_fuse
def test_nothing_is_writable(tmp_path: Path, tree_snapshot_copy) -> None:
    cli, src, _sid = tree_snapshot_copy
    with mounted(cli, tmp_path) as mount:
        folder = mount.where / "latest" / str(src).lstrip("/")
        attempts: list[Callable[[], object]] = [
            lambda: open(folder / "plain.txt", "r+b"),
            lambda: open(folder / "plain.txt", "ab"),
            lambda: open(folder / "new.txt", "wb"),
            lambda: os.mkdir(folder / "new-folder"),
            lambda: os.mkdir(mount.where / "snapshots" / "mine"),
            lambda: os.unlink(folder / "plain.txt"),
            lambda: os.rename(folder / "plain.txt", folder / "moved.txt"),
            lambda: os.chmod(folder / "plain.txt", 0o777),
            lambda: os.utime(folder / "plain.txt", (0, 0)),
            lambda: os.truncate(folder / "plain.txt", 0),
            lambda: os.symlink("x", folder / "new-link"),
            lambda: os.rmdir(folder / "empty-dir"),
            lambda: os.unlink(mount.where / "latest"),
        ]
        for attempt in attempts:
            with pytest.raises(OSError) as refused:
                attempt()
            assert refused.value.errno == errno.EROFS, refused.value
        assert (folder / "plain.txt").read_bytes() == b"hello world\n" * 100


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


@needs_fuse
def test_a_large_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    size = 192 << 20
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(5).randbytes(size)  # incompressible, and no two chunks alike
    (src / "dump.sql").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    cli = initialized_cli(tmp_path)
    cli("snapshot", str(src))
    with mounted(cli, tmp_path) as mount:
        pid = mount.proc.pid
        # The peak so far includes opening the repository (the password's key derivation):
        # writing 5 to clear_refs starts the peak again from the current size.
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        before = _peak_rss(pid)
        dump = mount.where / "latest" / str(src).lstrip("/") / "dump.sql"
        assert os.stat(dump).st_size == size
        assert sha256_of(dump) == expected
        # A read in the middle, across whatever blob boundaries lie there.
        with open(dump, "rb") as f:
            assert os.pread(f.fileno(), 3 << 20, 100 << 20) == data[100 << 20 : 103 << 20]
        grown = _peak_rss(pid) - before
        # Measured: about 45 MiB (the 32 MiB blob cache, blobs in flight, Python's arenas).
        # Holding the file would take 192 MiB; half of it is a generous margin.
        assert grown < size // 2, f"the mount's peak memory grew by {grown >> 20} MiB"
        del data
        assert mount.stop() == 0


# --- ending -----------------------------------------------------------------------------------


@needs_fuse
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_unmounts_cleanly(tmp_path: Path, tree_snapshot_copy, sig: int) -> None:
    cli, src, _sid = tree_snapshot_copy
    with mounted(cli, tmp_path) as mount:
        folder = mount.where / "latest" / str(src).lstrip("/")
        held = os.open(folder / "plain.txt", os.O_RDONLY)  # open in a viewer meanwhile
        try:
            assert os.read(held, 5) == b"hello"
            code = mount.stop(sig)
        finally:
            # libfuse unmounts lazily, so a file still open does not keep the view up; what the
            # viewer does with it next fails (ENOTCONN), closing included.
            with contextlib.suppress(OSError):
                os.close(held)
        assert code == 0, mount.err()
        assert not os.path.ismount(mount.where)
        assert os.listdir(mount.where) == []
        assert "unmounted" in mount.out()
        assert "Traceback" not in mount.err()


@needs_fuse
def test_umount_ends_the_command(tmp_path: Path, tree_snapshot_copy) -> None:
    cli, _src, _sid = tree_snapshot_copy
    with mounted(cli, tmp_path) as mount:
        subprocess.run(["umount", str(mount.where)], check=True)
        assert mount.proc.wait(timeout=DEADLINE) == 0, mount.err()
        assert not os.path.ismount(mount.where) and os.listdir(mount.where) == []


@needs_fuse
def test_a_mount_left_by_a_killed_process_is_named_and_can_be_cleared(
    tmp_path: Path, tree_snapshot_copy
) -> None:
    cli, _src, _sid = tree_snapshot_copy
    with mounted(cli, tmp_path) as mount:
        mount.proc.kill()  # SIGKILL: no handler runs, the kernel mount stays without a server
        mount.proc.wait(timeout=DEADLINE)
        again = cli("mount", str(mount.where), check=False)
        assert again.code == 2 and "umount" in again.err, again.err
        assert in_mount_table(mount.where)
        subprocess.run(["fusermount3", "-u", str(mount.where)], check=True)
        assert not in_mount_table(mount.where)


def test_a_mount_point_that_will_not_do_is_refused(tmp_path: Path) -> None:
    cli = initialized_cli(tmp_path)
    missing = cli("mount", str(tmp_path / "nowhere"), check=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    full = cli("mount", str(tmp_path / "full"), check=False)
    (tmp_path / "file").write_text("x")
    not_folder = cli("mount", str(tmp_path / "file"), check=False)
    for result, words in ((missing, "no such folder"), (full, "not empty"), (not_folder, "not a")):
        assert result.code == 2 and words in result.err, result.err
        assert "Traceback" not in result.err


def test_without_the_fuse_binding_the_message_says_what_to_install(tmp_path: Path) -> None:
    cli = initialized_cli(tmp_path)
    # As where `pip install 'dedupe[mount]'` was not run: importing the binding fails.
    missing = tmp_path / "no-binding"
    missing.mkdir()
    (missing / "mfusepy.py").write_text("raise ImportError(\"No module named 'mfusepy'\")\n")
    (tmp_path / "mnt").mkdir()
    pythonpath = f"{missing}{os.pathsep}{cli.env['PYTHONPATH']}"
    result = cli("mount", str(tmp_path / "mnt"), env={"PYTHONPATH": pythonpath}, check=False)
    assert result.code == 1, result.err
    assert "install" in result.err and "Traceback" not in result.err
    assert not os.path.ismount(tmp_path / "mnt")


# --- damage and hostile trees -------------------------------------------------------------------


def flip_byte_of_blob(repo_dir: str, blob_id: bytes) -> None:
    """Flip one byte in the middle of the stored blob (found through the repository's index)."""
    loc = open_repo(repo_dir).index.lookup(blob_id)
    assert loc is not None
    pack = os.path.join(repo_dir, *pack_name(loc.pack_id).split("/"))
    with open(pack, "r+b") as f:
        f.seek(loc.offset + loc.length // 2)
        byte = f.read(1)
        f.seek(loc.offset + loc.length // 2)
        f.write(bytes([byte[0] ^ 0x01]))


@needs_fuse
def test_a_damaged_blob_is_an_io_error_and_the_mount_lives_on(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(9)
    (src / "scan.pdf").write_bytes(rng.randbytes(3 << 20))
    (src / "letter.txt").write_bytes(b"Dear Mrs. Smith\n")
    cli = initialized_cli(tmp_path)
    cli("snapshot", str(src))
    repo = open_repo(cli.repo)
    _path, node = treewalk.find(repo, manifests.resolve(repo, "latest").tree, f"{src}/scan.pdf")
    assert node is not None
    flip_byte_of_blob(cli.repo, node.content[0])
    with mounted(cli, tmp_path) as mount:
        folder = mount.where / "latest" / str(src).lstrip("/")
        with pytest.raises(OSError) as failed:
            (folder / "scan.pdf").read_bytes()
        assert failed.value.errno == errno.EIO
        assert wait_until(lambda: "cannot read" in mount.err())
        assert "scan.pdf" in mount.err() and "damaged" in mount.err()
        # The mount goes on: other files, listings, and the intact part of the same file.
        assert (folder / "letter.txt").read_bytes() == b"Dear Mrs. Smith\n"
        assert sorted(os.listdir(folder)) == ["letter.txt", "scan.pdf"]
        assert mount.proc.poll() is None
        assert mount.stop() == 0
    assert "Traceback" not in mount.err()


def _entry(name: bytes, kind: str, **extra: object) -> dict:
    item: dict = {"n": name, "t": kind, "m": 0o755, "mt": 10**18, "u": 0, "g": 0}
    item.update(extra)
    return item


def _plant_snapshot(repo_dir: str, build: Callable[[Callable[[list[dict]], bytes]], bytes]) -> str:
    """A snapshot whose root tree `build(tree)` made from raw entries (an attacker with the
    password writes what it likes); its id."""
    repo = open_repo(repo_dir)
    writer = BlobWriter(repo)

    def tree(entries: list[dict]) -> bytes:
        return writer.add(codec.pack({"v": 1, "e": entries}))

    root = build(tree)
    writer.flush()
    return save_attacker_snapshot(repo, root)


def _too_deep(tree: Callable[[list[dict]], bytes]) -> bytes:
    tree_id = tree([])
    for _level in range(treewalk.MAX_DEPTH + 2):
        tree_id = tree([_entry(b"d", "d", st=tree_id)])
    return tree_id


def _exponential(tree: Callable[[list[dict]], bytes]) -> bytes:
    tree_id = tree([])  # 2**40 paths from 40 small trees: each names the next one twice
    for _level in range(40):
        tree_id = tree([_entry(b"a", "d", st=tree_id), _entry(b"b", "d", st=tree_id)])
    return tree_id


@needs_fuse
@pytest.mark.parametrize("build", [_too_deep, _exponential], ids=["too-deep", "exponential"])
def test_hostile_trees_are_refused_as_ls_refuses_them(
    tmp_path: Path, tree_snapshot_copy, build
) -> None:
    cli, src, _sid = tree_snapshot_copy
    (honest,) = snapshot_ids(cli)
    hostile = _plant_snapshot(cli.repo, build)
    assert cli("ls", hostile, check=False).code == 14
    with mounted(cli, tmp_path) as mount:
        with pytest.raises(OSError) as refused:
            os.listdir(folder_of(mount.where, hostile))
        assert refused.value.errno == errno.EIO
        assert wait_until(lambda: "is not shown" in mount.err())
        inside = folder_of(mount.where, honest) / str(src).lstrip("/")
        assert (inside / "plain.txt").read_bytes() == b"hello world\n" * 100
        assert mount.stop() == 0
    assert "Traceback" not in mount.err()


# --- the top level's names (pure) -----------------------------------------------------------------


def _snap(sid: str, tags: tuple[str, ...] = (), host: str = "office") -> Snapshot:
    when = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
    return Snapshot(sid, when, host, "u", (b"/srv/practice",), tags, b"\0" * 32)


def test_names_that_collide_get_a_suffix_and_none_is_hidden() -> None:
    # Same second and same short id: both shown; tags that clean to one name: both shown.
    a, b = "ab" * 32, "ab" * 31 + "cd"
    c = "ef" * 32
    view = layout.build([_snap(b, ("a/b",)), _snap(a, ("a_b", "..")), _snap(c, host="laptop")])
    names = list(view.snapshots)
    assert len(names) == 3 and names[1] == names[0] + "~2"
    assert [view.snapshots[n].id for n in names] == [a, b, c]
    assert view.latest == names[2]
    assert sorted(view.tags) == ["_", "a_b", "a_b~2"]
    assert sorted(view.sources) == ["srv_practice@laptop", "srv_practice@office"]
    assert view.sources["srv_practice@office"].links["latest"] == f"../../snapshots/{names[1]}"
    for name in [*names, *view.tags, *view.sources]:
        assert "/" not in name and name not in (".", "..", "")


# --- what the mount keeps in memory (pure) ----------------------------------------------------


def test_the_blob_cache_stays_within_its_bound_and_reads_each_range_exactly() -> None:
    rng = random.Random(3)
    blobs = {bytes([i]) * 32: rng.randbytes(rng.randint(1, 3000)) for i in range(40)}
    fetched: list[bytes] = []

    def fetch(blob_id: bytes) -> bytes:
        fetched.append(blob_id)
        return blobs[blob_id]

    ids = list(blobs)
    content = b"".join(blobs[i] for i in ids)
    file_layout = FileLayout(ids, [len(blobs[i]) for i in ids], len(content))
    cache = BlobCache(fetch, max_bytes=8000)
    for _ in range(300):
        offset, length = rng.randrange(len(content) + 10), rng.randint(0, 9000)
        assert file_layout.read(offset, length, cache.get) == content[offset : offset + length]
        assert cache.cached_bytes <= 8000  # blobs are at most 3000 bytes: never one alone
    # A sequential pass reads each blob once (it is cached while it is being read through).
    fetched.clear()
    position = 0
    while chunk := file_layout.read(position, 512, cache.get):
        position += len(chunk)
    assert position == len(content) and sorted(fetched) == sorted(set(fetched))
    cache.close()
    with pytest.raises(DamageError):
        FileLayout(ids, [len(blobs[i]) for i in ids], len(content) + 1)
