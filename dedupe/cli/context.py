"""What every command needs: the parsed arguments, output helpers, the repository, progress.

Only `dedupe.cli` prints, reads the environment or draws progress bars.

Output discipline (what `-q` and `-v` mean, for every command):
- `out`: the result itself on stdout (a listing, a table, a file's bytes): printed with `-q`
  too, since that is what was asked for;
- `done`: a success note on stdout ("snapshot ... saved", "created repository ..."), and
  `info`: a note on stderr: both silent with `-q`, so a cron job mails only when something
  went wrong;
- `warn` and errors: stderr, always;
- `verbose`: true with `-v`, for commands that can say more (each file's decision).
Progress bars appear only on a terminal's stderr and never with `-q`; sizes are in kB, MB,
GB as in every summary (`human_bytes`), with %, counts and an ETA whenever a total is known.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any, TypeAlias

from tqdm import tqdm

from dedupe.cli import password
from dedupe.errors import DamageError, NoRepository
from dedupe.profile import Profile, find_profile, load_profile
from dedupe.repo import foreign
from dedupe.repo.repository import PasswordSource, Repository
from dedupe.storage import Storage, open_storage
from dedupe.units import format_bytes


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.verbose = bool(getattr(args, "verbose", False)) and not self.quiet
        self._storage: Storage | None = None
        self._repo: Repository | None = None
        self._profile: Profile | None = None
        self.warnings: list[str] = []

    # --- output ---------------------------------------------------------------------------

    def out(self, text: str = "") -> None:
        """Human output on stdout (suppressed with --json, which prints JSON instead)."""
        if not self.json:
            print(printable(text))

    def done(self, text: str = "") -> None:
        """A success note on stdout: human output that `-q` and `--json` leave out."""
        if not self.quiet:
            self.out(text)

    def emit_json(self, value: Any) -> None:
        # ASCII escapes keep the output valid JSON even for file names that are not UTF-8
        # (they appear as \udcXX surrogates, which os.fsencode turns back into the bytes).
        # NaN and infinities are not JSON: a number that slipped through as one becomes null.
        try:
            text = json.dumps(value, indent=2, ensure_ascii=True, allow_nan=False)
        except ValueError:
            text = json.dumps(_finite(value), indent=2, ensure_ascii=True, allow_nan=False)
        sys.stdout.write(text + "\n")

    def info(self, text: str) -> None:
        if not self.quiet:
            print(printable(text), file=sys.stderr)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        print(f"warning: {printable(text)}", file=sys.stderr)

    def progress_bar(
        self, total: int | None, desc: str, unit: str = "B", note: str = ""
    ) -> ProgressBar | None:
        """A bar on a terminal's stderr (None with -q or without a terminal): `unit` "B" counts
        bytes (shown as KiB, MiB, GiB), any other unit counts things ("files", " packs").
        With a total: %, counts and ETA; `total` may be set later (`bar.total = n`)."""
        if self.quiet or not sys.stderr.isatty():
            return None
        return ProgressBar(total=total, desc=desc, unit=unit, note=note)

    # --- repository -----------------------------------------------------------------------

    @property
    def repo_url(self) -> str:
        """--repo, else the repository of --profile (where a command takes one), else
        DEDUPE_REPO: a profile named on the command line beats the environment."""
        if self.args.repo:
            return str(self.args.repo)
        profile = self.profile()
        if profile is not None:
            return profile.repository.url
        return os.environ.get("DEDUPE_REPO", "")

    def profile(self) -> Profile | None:
        """The profile named by this command's --profile, loaded once; None without one."""
        named = getattr(self.args, "profile", None)
        if named is None:
            return None
        if self._profile is None:
            path = find_profile(named, os.environ, os.getcwd())
            assert path is not None  # an explicit --profile is found or refused (UsageError)
            self._profile = load_profile(path)
        return self._profile

    def _password(self) -> Callable[[], bytes]:
        """The repository's password source: the profile's password-file or -command when the
        repository is the profile's and DEDUPE_PASSWORD_* says nothing, else the usual order."""
        profile = None if self.args.repo else self.profile()
        settings = None if profile is None else profile.repository
        env_given = any(os.environ.get(f"DEDUPE_PASSWORD{s}") for s in ("_FILE", "_COMMAND", ""))
        if settings is None or env_given:
            return password.source()
        if settings.password_file is None and settings.password_command is None:
            return password.source()

        def from_profile() -> bytes:
            found = password.from_settings(
                settings.password_file, settings.password_command, "the profile's [repository]"
            )
            assert found is not None
            return found

        return from_profile

    def storage(self, create: bool = False) -> Storage:
        if self._storage is None:
            self._storage = open_storage(
                self.repo_url, s3_endpoint=self.args.s3_endpoint, create=create
            )
        return self._storage

    def repo(self) -> Repository:
        """The unlocked repository (asks for the password once)."""
        if self._repo is None:
            self._repo = open_repository(self.storage(), self._password())
        return self._repo

    def index_problems(self) -> list[str]:
        """Index files the repository skipped as damaged (reported after the command)."""
        return list(self._repo.index_errors) if self._repo is not None else []

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()


def open_repository(storage: Storage, secret: PasswordSource) -> Repository:
    """`Repository.open`, except that another tool's repository (restic, Borg...) is named as
    such, exit 10, instead of being reported as no repository or as damaged."""
    try:
        return Repository.open(storage, secret)
    except (NoRepository, DamageError):
        other = foreign.identify(storage)
        if other is not None:
            raise NoRepository(other.message(storage.url)) from None
        raise


class ProgressBar(tqdm):  # type: ignore[misc]
    """tqdm with our units and layout.

    Bytes are shown as `human_bytes` (dedupe.units) shows them everywhere else. With a
    total: '3.1 GB of 12.0 GB 26%, 45.2 MB/s, ETA 03:12' (or 'files 120/4000'); without:
    what was done, the rate and the time. `note` (set any time) is added at the end, e.g. the
    bytes read beside a file count. A terminal that reports 0 columns or 0 rows (some ptys,
    `docker exec -t`) gets an 80-column line instead of nothing."""

    def __init__(self, *, total: int | None, desc: str, unit: str, note: str = "") -> None:
        self.note = note
        self.counts_bytes = unit == "B"
        size = _terminal_size()
        sized: dict[str, Any] = (
            {"dynamic_ncols": True} if size is not None else {"ncols": 80, "nrows": 24}
        )
        super().__init__(
            total=total,
            desc=desc,
            unit=unit.strip() or "items",
            file=sys.stderr,
            leave=False,
            mininterval=0.2,
            **sized,
        )

    def _amount(self, n: float) -> str:
        return human_bytes(n) if self.counts_bytes else f"{n:.0f}"

    @property
    def format_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = super().format_dict
        n, total, elapsed = d["n"], d["total"], d["elapsed"]
        rate = d["rate"] or (n / elapsed if elapsed > 0 else 0)
        note = f", {self.note}" if self.note else ""
        if self.counts_bytes:
            done = human_bytes(n) + (f" of {human_bytes(total)}" if total else "")
            speed = f"{human_bytes(rate)}/s"
        else:
            done = f"{d['unit']} {n:.0f}" + (f"/{total:.0f}" if total else "")
            speed = f"{rate:.0f} {d['unit']}/s" if rate >= 10 else f"{rate:.1f} {d['unit']}/s"
        if total:
            d["bar_format"] = (
                "{desc}: {percentage:3.0f}% {bar} "
                + _braces(f"{done}, {speed}, ETA ")
                + "{remaining}"
                + _braces(note)
            )
        else:
            d["bar_format"] = "{desc}: " + _braces(f"{done}, {speed}{note}") + " [{elapsed}]"
        return d


def _braces(text: str) -> str:
    """`text` safe inside a tqdm bar_format (a str.format template)."""
    return text.replace("{", "{{").replace("}", "}}")


def _terminal_size() -> os.terminal_size | None:
    """stderr's terminal size, or None when it reports no columns or no rows."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        return None
    return size if size.columns > 0 and size.lines > 0 else None


def _escape_table() -> dict[int, str]:
    controls = [c for c in range(0x20) if c not in (0x09, 0x0A)] + list(range(0x7F, 0xA0))
    table = {c: f"\\x{c:02x}" for c in controls}
    # Bytes 0x80-0x9f of a name that is not UTF-8 arrive as surrogates and would reach the
    # terminal as raw C1 bytes (0x9b is CSI on many terminals).
    table.update({0xDC00 + c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})
    return table


_ESCAPES = _escape_table()


def printable(text: str) -> str:
    """`text` with control characters shown as `\\xNN`: C0 (but tab and newline), DEL and C1.

    Names, hosts, tags, paths and hold reasons come from the repository (or from whoever could
    write to it) and must not reach a terminal raw: an escape sequence can rewrite the screen,
    hide lines or retitle the window. `Context.out`, `info` and `warn` apply it, so every
    command's human output is escaped in this one place; JSON output is exact (JSON escapes
    control characters itself)."""
    return text.translate(_ESCAPES)


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None, for valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


human_bytes = format_bytes  # the package's one byte formatter (dedupe.units): decimal, as drives


Handler = Callable[[Context], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What each command's `register(sub, common)` adds its parser to."""
