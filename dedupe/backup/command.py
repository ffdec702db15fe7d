"""The command whose output `dedupe snapshot --stdin-from-command` backs up (a database dump).

`CommandStream` starts the command with no shell (an argv list), stdin from /dev/null and its
stderr passed through to ours; its stdout is the stream the snapshot reads. `finish`, called once
the stream reached its end, waits for the command to exit (also one that closed its stdout and
kept running) and raises `CommandFailed` unless it exited with status 0: then the snapshot must
not be saved. `close` (always, from a `with`) stops a command that is still running.

The command dies with dedupe: on Linux it is started with a parent-death signal
(`dedupe.platform.die_with_parent_hook`), so even a SIGKILL of dedupe stops it; everywhere else
(macOS has no such signal) it is stopped in `close`, and a command still writing gets a broken
pipe once dedupe is gone.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
from collections.abc import Sequence
from types import TracebackType
from typing import BinaryIO, cast

from dedupe.errors import DedupeError
from dedupe.platform import die_with_parent_hook

# How long a command stopped with SIGTERM (dedupe failed or was interrupted) may take to exit
# before it gets SIGKILL.
STOP_GRACE_SECONDS = 10.0


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
                preexec_fn=die_with_parent_hook(),  # only prctl and getppid (see there)
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
