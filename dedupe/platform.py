"""Every operating-system-specific call of dedupe, in one place: Linux, macOS, and the rest.

Nothing else in the package reads `/proc`, calls prctl, sysctl or ps, or decides between
systemd, launchd and cron: it asks this module, so a Mac practice server and a Linux one take
the same code paths everywhere else.

How each answer is got, and what it is where the system has no such thing:

- `process_start_time`: Linux `/proc/PID/stat` field 22 (ticks since boot); macOS psutil's
  create time in whole seconds since the epoch (what `ps -o lstart=` prints, asked without
  starting `ps`; `ps` is the fallback where psutil cannot tell); None elsewhere.
- `boot_id`: Linux `/proc/sys/kernel/random/boot_id`; macOS `sysctl kern.bootsessionuuid`,
  else `kern.boottime`; '' elsewhere.
- `pid_namespace`: Linux `/proc/self/ns/pid`; '' elsewhere (macOS has none, see below).
- `die_with_parent_hook`: Linux prctl(PR_SET_PDEATHSIG, SIGKILL); None elsewhere (see below).
- `is_mount_point`: Linux `/proc/self/mountinfo`; elsewhere the system's mount table from psutil
  (`getfsstat` on macOS, where drives appear under `/Volumes`), and where that cannot be read,
  st_dev differs from the parent's.
- `free_bytes`: statvfs through `shutil.disk_usage`, everywhere.
- `scheduler_kind`: launchd on macOS; systemd on Linux when systemd is the running init; cron
  otherwise.

Why these choices:
- A lock's holder is judged by its pid only where a pid names one process: same host, same boot
  and same pid namespace (`dedupe.repo.lock`). macOS has no pid namespaces and this module
  reports none (''), so on a Mac a lock is judged by its age alone, as before this module: the
  cautious answer (a dead holder's lock waits 30 minutes) rather than a guess about a live one.
- macOS's boot time (`kern.boottime`) moves when the clock is stepped or on wake, so the boot
  session UUID is asked first; boot time is the fallback for systems without it. Both come from
  `sysctl`: psutil has no boot session UUID, and its boot time drops the microseconds, so a
  boot id recorded in an older lock would no longer match.
- psutil is not used for Linux start times: its create time is boot time plus ticks in wall-clock
  seconds, and the boot time it adds moves when the clock is stepped, so the same process could
  get another number later; the ticks are the exact, stable answer every lock has recorded.
  On macOS locks are judged by age, not by pid (no pid namespace, above), so psutil's create
  time, which follows clock steps, changes nothing there but spares a `ps` per lock check.
- `os.path.ismount` answers False for a bind mount (same device as its parent); the kernel's
  mount table is the exact answer on Linux, and the mount table is the answer elsewhere too: a
  drive under `/Volumes` is listed there (and is its own device, the fallback).
- macOS has no parent-death signal: a command started by dedupe is stopped by
  `CommandStream.close` when dedupe fails or is interrupted, and a command still writing gets a
  broken pipe once dedupe is gone (SIGKILL of dedupe leaves a command that never writes running).

Each function takes `system` (default `sys.platform`) so both branches run in tests on Linux; the
parsers of macOS output (`parse_ps_lstart`, `parse_sysctl_boottime`) are pure functions, and
`run_tool` is the one place an OS tool (ps, sysctl, systemctl, launchctl, crontab) is run.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

try:
    import psutil  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # a runtime dependency; without it, ps and st_dev answer as before
    psutil = None

SchedulerKind = Literal["systemd", "launchd", "cron"]

MAX_ID = 256  # the longest boot id or pid namespace text we pass on (locks carry them)
TOOL_TIMEOUT = 10.0  # seconds an OS tool (ps, sysctl) may take to answer
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_SYSTEMD_RUNNING = "/run/systemd/system"  # exists only when systemd is the init (sd_booted(3))


def is_linux(system: str | None = None) -> bool:
    return (system or sys.platform).startswith("linux")


def is_macos(system: str | None = None) -> bool:
    return (system or sys.platform) == "darwin"


@dataclass(frozen=True)
class ToolRun:
    """What an OS tool said: its exit status, stdout and stderr (text)."""

    returncode: int
    stdout: str
    stderr: str


def run_tool(
    argv: Sequence[str],
    stdin_text: str | None = None,
    *,
    cwd: str | None = None,
    unset: Sequence[str] = (),
) -> ToolRun | None:
    """Run an OS tool (ps, sysctl, systemctl, launchctl, crontab) in the C locale, with no
    shell, in `cwd`, without the environment variables `unset`; None when it cannot be run
    (not installed, not allowed, or it hung)."""
    env = {k: v for k, v in os.environ.items() if k not in unset} | {"LC_ALL": "C", "LANG": "C"}
    try:
        proc = subprocess.run(
            list(argv),
            input=stdin_text,
            stdin=subprocess.DEVNULL if stdin_text is None else None,
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            cwd=cwd,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return ToolRun(proc.returncode, proc.stdout, proc.stderr)


def run_text(argv: Sequence[str]) -> tuple[int, str] | None:
    """(exit status, stdout) of an OS tool, or None when it cannot be run."""
    run = run_tool(argv)
    return None if run is None else (run.returncode, run.stdout)


def has_tool(name: str) -> bool:
    """Is the program `name` on PATH?"""
    return shutil.which(name) is not None


# --- processes ----------------------------------------------------------------------------


def process_start_time(pid: int, system: str | None = None) -> int | None:
    """When `pid` started, as a number that is the same each time it is asked about the same
    process and differs for a later process with that pid; None if it is not running (or the
    system cannot tell). Linux: clock ticks since boot; macOS: seconds since the epoch."""
    if is_linux(system):
        return _linux_start_ticks(pid)
    if is_macos(system) and psutil is not None:
        try:
            return int(psutil.Process(pid).create_time())
        except psutil.ZombieProcess:
            pass  # exited, not yet reaped: ps still tells its start, as before
        except psutil.NoSuchProcess:
            return None
        except (psutil.Error, OSError):
            pass  # not allowed to ask: ps may still be
    if is_macos(system):
        answer = run_text(["ps", "-o", "lstart=", "-p", str(pid)])
        if answer is None or answer[0] != 0:
            return None  # ps exits 1 for a pid that is not running
        return parse_ps_lstart(answer[1])
    return None


def _linux_start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return parse_proc_stat_start(stat)


def parse_proc_stat_start(stat: bytes) -> int | None:
    """Field 22 (starttime) of a `/proc/PID/stat` line; None if the line is malformed."""
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def parse_ps_lstart(text: str) -> int | None:
    """Seconds since the epoch from `ps -o lstart=` in the C locale ('Sat Dec  5 09:29:19 2026',
    local time, as BSD and procps ps print it); None for empty or other text."""
    line = " ".join(text.split())
    if not line:
        return None
    try:
        parsed = time.strptime(line, "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    return int(time.mktime(parsed))


# --- this boot and pid space ---------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def boot_id(system: str | None = None) -> str:
    """An id of this boot of this machine: another boot has another one ('' if unknown).
    Asked once per process (it cannot change while the process lives; macOS runs sysctl)."""
    if is_linux(system):
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                return f.read().strip()[:MAX_ID]
        except OSError:
            return ""
    if is_macos(system):
        answer = run_text(["sysctl", "-n", "kern.bootsessionuuid"])
        if answer is not None and answer[0] == 0 and answer[1].strip():
            return parse_sysctl_uuid(answer[1])
        answer = run_text(["sysctl", "-n", "kern.boottime"])
        if answer is not None and answer[0] == 0:
            return parse_sysctl_boottime(answer[1])
    return ""


def parse_sysctl_uuid(text: str) -> str:
    """`sysctl -n kern.bootsessionuuid` ('6A1F...-...'): the UUID in lower case, '' if it is
    not one."""
    value = text.strip().lower()
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value):
        return value
    return ""


def parse_sysctl_boottime(text: str) -> str:
    """`sysctl -n kern.boottime` ('{ sec = 1764927000, usec = 48211 } Sat Dec  5 09:30:00 2026')
    as 'boottime:1764927000.048211'; '' for other text."""
    found = re.search(r"\bsec\s*=\s*(\d+)\s*,\s*usec\s*=\s*(\d+)", text)
    if found is None:
        return ""
    return f"boottime:{int(found[1])}.{int(found[2]):06d}"


def pid_namespace(system: str | None = None) -> str:
    """Our pid namespace on Linux, e.g. 'pid:[4026531836]'; '' elsewhere (macOS has none, see
    the module docstring) or if unreadable."""
    if not is_linux(system):
        return ""
    try:
        return os.readlink("/proc/self/ns/pid")[:MAX_ID]
    except OSError:
        return ""


def current_umask(system: str | None = None) -> int | None:
    """The process's umask, read without changing it (Linux: /proc/self/status, kernel 4.7 and
    later); None where it cannot be read so (macOS). Setting it to read it, as `os.umask`
    does, is not safe in a process with threads: another thread creating a file meanwhile
    (the web page's restore beside a request) would get the wrong permissions."""
    if not is_linux(system):
        return None
    try:
        with open("/proc/self/status", "rb") as f:
            return parse_status_umask(f.read())
    except OSError:
        return None


def parse_status_umask(status: bytes) -> int | None:
    """The `Umask:` line of /proc/PID/status (octal, e.g. b'Umask:\t0022'); None if absent."""
    found = re.search(rb"^Umask:\s*([0-7]{1,4})\s*$", status, re.MULTILINE)
    return int(found[1], 8) if found else None


# --- child processes -----------------------------------------------------------------------


def die_with_parent_hook(system: str | None = None) -> Callable[[], None] | None:
    """Linux: a pre-exec hook (Popen's `preexec_fn`) that has the kernel send the child SIGKILL
    when the thread that started it (dedupe's main thread) dies, however it dies. None elsewhere
    (macOS has no such signal: see the module docstring) or when prctl is not available. The
    hook only calls prctl and getppid: it runs between fork and exec."""
    if not is_linux(system):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def hook() -> None:
        try:
            prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
            if os.getppid() != parent:  # dedupe died before the signal was armed
                os.kill(os.getpid(), kill)
        except Exception:  # never fail the start over this; close() still stops the command
            pass

    return hook


# --- file systems ----------------------------------------------------------------------------


def is_mount_point(
    path: str | os.PathLike[str],
    system: str | None = None,
    *,
    mount_table: Callable[[], set[str] | None] | None = None,
) -> bool:
    """Is `path` (symlinks resolved) where a file system is mounted? On Linux also true for a
    bind mount, which `os.path.ismount` misses; false for a path that does not exist.
    `mount_table` gives the mounted paths, or None when the system cannot tell (default:
    `system_mount_points`; tests pass a table of their own)."""
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        return False
    if is_linux(system):
        try:
            with open("/proc/self/mountinfo", "rb") as f:
                table = f.read()
        except OSError:
            pass  # no /proc (a chroot): the device comparison below
        else:
            return real in mount_points(table)
    points = (mount_table or system_mount_points)()
    if points is not None and real in {os.path.realpath(p) for p in points}:
        return True
    return _own_device(real)


def system_mount_points() -> set[str] | None:
    """Where file systems are mounted, from the system's table through psutil (`getfsstat` on
    macOS: the drives under /Volumes, network shares, disk images); None if it cannot tell."""
    if psutil is None:
        return None
    try:
        return {part.mountpoint for part in psutil.disk_partitions(all=True)}
    except (psutil.Error, OSError, RuntimeError):
        return None


def _own_device(real: str) -> bool:
    """macOS and the rest: a mount point is on another device than its parent (or is '/')."""
    try:
        here = os.stat(real)
        parent = os.stat(os.path.join(real, ".."))
    except OSError:
        return False
    return here.st_dev != parent.st_dev or here.st_ino == parent.st_ino


def mount_points(mountinfo: bytes) -> set[str]:
    """The mount points named in a `/proc/self/mountinfo` text (field 5, octal escapes such as
    `\\040` for a space decoded)."""
    points = set()
    for line in mountinfo.splitlines():
        fields = line.split(b" ")
        if len(fields) > 4:
            points.add(os.fsdecode(_unescape_octal(fields[4])))
    return points


def _unescape_octal(field: bytes) -> bytes:
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), field)


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes a non-root writer may still use on the file system holding `path` (OSError if
    it cannot be asked, e.g. the path does not exist)."""
    return shutil.disk_usage(path).free


# --- the scheduler ---------------------------------------------------------------------------


def scheduler_kind(
    system: str | None = None, *, systemd_marker: str = _SYSTEMD_RUNNING
) -> SchedulerKind:
    """Which scheduler runs nightly jobs here: launchd on macOS; systemd on Linux when systemd
    is the running init (not merely installed: a container has systemctl but no systemd);
    cron otherwise. `systemd_marker` is the folder that proves systemd runs (for tests)."""
    if is_macos(system):
        return "launchd"
    if is_linux(system) and os.path.isdir(systemd_marker):
        return "systemd"
    return "cron"


def is_superuser() -> bool:
    """Installing for the whole system needs this."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def user_id() -> int:
    """Our numeric user id (launchd's gui/UID domain)."""
    return os.getuid()
