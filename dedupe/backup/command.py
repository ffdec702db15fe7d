"""The command whose output `dedupe snapshot --stdin-from-command` backs up (a database dump).

`CommandStream` starts the command with no shell (an argv list), stdin from /dev/null and its
stderr passed through to ours; its stdout is the stream the snapshot reads. `finish`, called once
the stream reached its end, waits for the command to exit (also one that closed its stdout and
kept running) and raises `CommandFailed` unless it exited with status 0: then the snapshot must
not be saved. `close` (always, from a `with`) stops a command that is still running.

The command dies with dedupe: on Linux it is started with a parent-death signal
(`die_with_parent`), so even a SIGKILL of dedupe stops it; everywhere else it is stopped in
`close`, and a command still writing gets a broken pipe once dedupe is gone.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import BinaryIO, cast

from dedupe.errors import DedupeError

# How long a command stopped with SIGTERM (dedupe failed or was interrupted) may take to exit
# before it gets SIGKILL.
STOP_GRACE_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class CommandFailed(DedupeError):
    """The command could not be started, exited non-zero or died: nothing was saved (exit 1)."""


def shown(argv: Sequence[str]) -> str:
    """The command as a user would type it, quoted: 'pg_dump -U office practice' (in double
    quotes when it holds a single quote: "sh -c 'pg_dump practice | gzip'")."""
    text = shlex.join(argv)
    return f'"{text}"' if "'" in text else f"'{text}'"


def status_words(returncode: int) -> str:
    """A non-zero exit status in words: 'failed with exit status 1', 'was killed by signal 9
    (SIGKILL)'."""
    if returncode >= 0:
        return f"failed with exit status {returncode}"
    number = -returncode
    try:
        name = f" ({signal.Signals(number).name})"
    except ValueError:
        name = ""
    return f"was killed by signal {number}{name}"


def die_with_parent() -> Callable[[], None] | None:
    """Linux: a pre-exec hook that has the kernel send the child SIGKILL when the thread that
    started it (dedupe's main thread) dies, however it dies. None elsewhere or when prctl is not
    available. The hook only calls prctl and getppid: it runs between fork and exec."""
    if not sys.platform.startswith("linux"):
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


class CommandStream:
    """One run of the command; use it as a context manager around the snapshot.

    `name` is the stream's name, used in the messages ("the backup of practice.sql ...")."""

    def __init__(self, argv: Sequence[str], name: str) -> None:
        if not argv:
            raise ValueError("no command")
        self.argv = list(argv)
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BinaryIO:
        """Start the command; its stdout. Raises CommandFailed when it cannot be started."""
        program = self.argv[0]
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=None,  # its messages go where ours go
                close_fds=True,
                preexec_fn=die_with_parent(),  # only prctl and getppid (see there)
            )
        except FileNotFoundError:
            raise self._not_started(
                f"the program '{program}' was not found. Check the spelling, that it is "
                "installed, or give its full path (for example /usr/bin/pg_dump)"
            ) from None
        except PermissionError:
            raise self._not_started(
                f"'{program}' is not a program this user may run (permission denied)"
            ) from None
        except OSError as exc:
            raise self._not_started(f"'{program}': {exc.strerror or exc}") from None
        assert self._proc.stdout is not None
        return cast(BinaryIO, self._proc.stdout)

    def finish(self) -> None:
        """After the stream's end: wait for the command to exit; raise CommandFailed unless it
        exited with status 0."""
        proc = self._running()
        returncode = proc.wait()
        if returncode != 0:
            raise CommandFailed(
                f"the backup of {self.name} was not saved: the command {shown(self.argv)} "
                f"{status_words(returncode)} (its messages, if any, are above). Earlier backups "
                "are not affected; fix the command and run the backup again."
            )

    def close(self) -> None:
        """Stop the command if it still runs (dedupe failed or was interrupted), and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdout is not None:
            proc.stdout.close()  # a command blocked writing to us gets a broken pipe
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> CommandStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("the command was not started")
        return self._proc

    def _not_started(self, why: str) -> CommandFailed:
        return CommandFailed(
            f"the backup of {self.name} was not saved: the command {shown(self.argv)} could not "
            f"be started: {why}."
        )
