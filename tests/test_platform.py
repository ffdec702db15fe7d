"""dedupe.platform on this (Linux) machine, and its macOS branches wherever they can run here.

The macOS branches run for real where Linux has the same tool (procps `ps -o lstart=` prints the
format BSD ps prints); what only a Mac prints (`sysctl kern.boottime`) is parsed from its text.
Mount points are real mounts (a bind mount and a tmpfs, as root).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedupe import platform

PY = sys.executable
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux branch")


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def mounted(source: Path, target: Path, *options: str) -> None:
    proc = subprocess.run(
        ["mount", *options, str(source), str(target)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount in CI: {proc.stderr}")
        pytest.skip(f"cannot mount (needs root): {proc.stderr.strip()}")


@pytest.fixture
def bind_mount(tmp_path: Path) -> Iterator[Path]:
    """A folder bind-mounted onto another folder of the same file system (name with a space)."""
    source, target = tmp_path / "source", tmp_path / "the drive"
    source.mkdir()
    target.mkdir()
    mounted(source, target, "--bind")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


# --- processes ----------------------------------------------------------------------------


@linux_only
def test_linux_start_time_names_one_process() -> None:
    here = platform.process_start_time(os.getpid())
    assert here is not None and here == platform.process_start_time(os.getpid())
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        assert here == platform.parse_proc_stat_start(f.read())
    assert platform.process_start_time(dead_pid()) is None


def test_proc_stat_parsing_survives_odd_command_names() -> None:
    line = b"4242 (a) b (c) S 1 4242 4242 0 -1 4194560 " + b"0 " * 12 + b"987654 0 0"
    assert platform.parse_proc_stat_start(line) == 987654
    assert platform.parse_proc_stat_start(b"4242 (x) S 1") is None


def test_macos_start_time_through_ps_is_when_the_process_started() -> None:
    before = time.time()
    child = subprocess.Popen([PY, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    after = time.time()
    try:
        start = platform.process_start_time(child.pid, system="darwin")
        assert start is not None
        assert int(before) - 1 <= start <= after + 1  # ps tells whole seconds
        assert platform.process_start_time(child.pid, system="darwin") == start
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert platform.process_start_time(child.pid, system="darwin") is None


def test_macos_start_time_from_psutil_is_what_ps_says() -> None:
    # The macOS branch asks psutil instead of starting `ps`: the same whole seconds, for a live
    # process, and None for one that is gone (psutil answers on Linux too, from /proc).
    child = subprocess.Popen([PY, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        listed = platform.run_text(["ps", "-o", "lstart=", "-p", str(child.pid)])
        assert listed is not None and listed[0] == 0
        assert platform.process_start_time(child.pid, system="darwin") == (
            platform.parse_ps_lstart(listed[1])
        )
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert platform.process_start_time(dead_pid(), system="darwin") is None


def test_ps_lstart_parsing() -> None:
    # Captured from `ps -o lstart= -p 1` (C locale); BSD ps on macOS prints the same format.
    captured = "Sat Dec  5 09:29:19 2026\n"
    expected = time.mktime((2026, 12, 5, 9, 29, 19, 0, 0, -1))
    assert platform.parse_ps_lstart(captured) == int(expected)
    assert platform.parse_ps_lstart("") is None
    assert platform.parse_ps_lstart("  \n") is None
    assert platform.parse_ps_lstart("ps: illegal option") is None


def test_other_systems_know_no_start_time() -> None:
    assert platform.process_start_time(os.getpid(), system="sunos5") is None


# --- boot and pid space --------------------------------------------------------------------


@linux_only
def test_linux_boot_id_and_pid_namespace() -> None:
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert platform.boot_id() == f.read().strip()
    assert platform.pid_namespace() == os.readlink("/proc/self/ns/pid")


def test_macos_boot_id_parsing() -> None:
    # The formats `sysctl -n` prints on macOS for the two values (from its documentation).
    assert (
        platform.parse_sysctl_uuid("6A1FE2F0-3A0C-4C2B-9B7E-2D1C0E5F4A11\n")
        == "6a1fe2f0-3a0c-4c2b-9b7e-2d1c0e5f4a11"
    )
    assert platform.parse_sysctl_uuid("sysctl: unknown oid 'kern.bootsessionuuid'") == ""
    boottime = "{ sec = 1764927000, usec = 48211 } Sat Dec  5 09:30:00 2026\n"
    assert platform.parse_sysctl_boottime(boottime) == "boottime:1764927000.048211"
    assert platform.parse_sysctl_boottime("") == ""


def test_macos_branches_on_a_machine_without_their_tools_say_nothing() -> None:
    # Linux has no kern.* sysctl: the macOS branch runs, fails and answers "unknown".
    assert platform.boot_id("darwin") == ""
    assert platform.pid_namespace("darwin") == ""
    assert platform.boot_id("sunos5") == ""


# --- dying with dedupe ---------------------------------------------------------------------


def test_no_parent_death_signal_outside_linux() -> None:
    assert platform.die_with_parent_hook("darwin") is None
    assert platform.die_with_parent_hook("win32") is None


@linux_only
def test_the_linux_hook_kills_the_child_with_its_parent() -> None:
    # A parent starts `sleep` with the hook, tells us its pid, and is killed; the kernel must
    # then kill the sleep. A pidfd becomes readable when that process exits: no polling.
    script = (
        "import subprocess, sys\n"
        "from dedupe.platform import die_with_parent_hook\n"
        "child = subprocess.Popen(['sleep', '600'], preexec_fn=die_with_parent_hook())\n"
        "print(child.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    root = str(Path(__file__).resolve().parent.parent)
    parent = subprocess.Popen(
        [PY, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert parent.stdout is not None
    sleeper = int(parent.stdout.readline())
    pidfd = os.pidfd_open(sleeper)
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        ready, _, _ = select.select([pidfd], [], [], 60)
        assert ready, "the child outlived its parent"
    finally:
        os.close(pidfd)
        if parent.stdin is not None:
            parent.stdin.close()


# --- file systems ----------------------------------------------------------------------------


def test_mountinfo_parsing_decodes_escapes() -> None:
    table = (
        b"22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        b"45 22 254:0 /tmp/a /media/backup\\040monday rw,relatime - ext4 /dev/vda rw\n"
    )
    assert platform.mount_points(table) == {"/", "/media/backup monday"}


def test_root_is_a_mount_point_and_a_plain_folder_is_not(tmp_path: Path) -> None:
    for system in (sys.platform, "darwin"):
        assert platform.is_mount_point("/", system=system)
        assert not platform.is_mount_point(tmp_path, system=system)
        assert not platform.is_mount_point(tmp_path / "missing", system=system)


@linux_only
def test_a_bind_mount_is_a_mount_point(bind_mount: Path) -> None:
    assert not os.path.ismount(bind_mount)  # why the module does not use it on Linux
    assert platform.is_mount_point(bind_mount)
    assert not platform.is_mount_point(bind_mount.parent / "source")


def test_a_tmpfs_is_a_mount_point_on_both_branches(small_disk: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-drive"
    link.symlink_to(small_disk)
    for system in (sys.platform, "darwin"):
        assert platform.is_mount_point(small_disk, system=system)
        assert platform.is_mount_point(link, system=system)  # the drive, through a symlink
        (small_disk / "repo").mkdir(exist_ok=True)
        assert not platform.is_mount_point(small_disk / "repo", system=system)


def test_free_bytes_of_a_small_disk(small_disk: Path, tmp_path: Path) -> None:
    free = platform.free_bytes(small_disk)
    assert 60 * 2**20 <= free <= 64 * 2**20
    (small_disk / "ten-mib").write_bytes(b"\0" * (10 * 2**20))
    assert platform.free_bytes(small_disk) <= free - 10 * 2**20
    with pytest.raises(OSError):
        platform.free_bytes(tmp_path / "missing")


# --- the scheduler ---------------------------------------------------------------------------


def test_scheduler_kind(tmp_path: Path) -> None:
    assert platform.scheduler_kind("darwin") == "launchd"
    assert platform.scheduler_kind("linux", systemd_marker=str(tmp_path)) == "systemd"
    assert platform.scheduler_kind("linux", systemd_marker=str(tmp_path / "no")) == "cron"
    assert platform.scheduler_kind("freebsd14", systemd_marker=str(tmp_path)) == "cron"
    expected = "systemd" if os.path.isdir("/run/systemd/system") else "cron"
    if sys.platform.startswith("linux"):
        assert platform.scheduler_kind() == expected


def test_the_macos_branch_reads_the_mount_table(tmp_path: Path) -> None:
    # A drive under /Volumes is in the system's mount table; a folder someone made where the
    # drive should be (same device as its parent) is not, and is no mount point.
    volumes = tmp_path / "Volumes"
    drive, stand_in = volumes / "backup-monday", volumes / "backup-tuesday"
    drive.mkdir(parents=True)
    stand_in.mkdir()
    table = {str(drive), "/"}
    assert platform.is_mount_point(drive, system="darwin", mount_table=lambda: table)
    assert not platform.is_mount_point(stand_in, system="darwin", mount_table=lambda: table)
    # the boot volume's entry in /Volumes is a link to /
    (volumes / "Macintosh HD").symlink_to("/")
    assert platform.is_mount_point(volumes / "Macintosh HD", system="darwin")
    # a system that cannot tell: the device comparison decides
    assert not platform.is_mount_point(drive, system="darwin", mount_table=lambda: None)
    assert platform.is_mount_point("/", system="darwin", mount_table=lambda: None)


def test_the_system_mount_table_lists_real_mounts(small_disk: Path) -> None:
    points = platform.system_mount_points()
    assert points is not None and "/" in points and str(small_disk) in points


@linux_only
def test_the_macos_branch_sees_a_bind_mount_through_the_table(bind_mount: Path) -> None:
    # The device comparison alone misses a bind mount; the mount table psutil reads does not.
    assert platform.is_mount_point(bind_mount, system="darwin")
    assert not platform.is_mount_point(bind_mount, system="darwin", mount_table=lambda: None)
