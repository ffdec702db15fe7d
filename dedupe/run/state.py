"""The state folder: run records, what each medium last received, and the run log.

The contract puts it at `DEDUPE_STATE_DIR`, else `$XDG_STATE_HOME/dedupe` (default
`~/.local/state/dedupe`), never in the cache folder: deleting the cache must lose nothing, and
these records are what `status` shows for a drive that is unplugged and what lets a later run tell
the right drive from the wrong one. Files are JSON written whole (temporary file, fsync, rename),
so a crash leaves the old record or the new one, never half of either. A record that cannot be
read is reported and treated as absent only where absence is safe (a drive then counts as new:
its id is taken again from the drive, and nothing is written to a drive that is not mounted).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dedupe.errors import DedupeError, RepositoryLocked

RUNS_KEPT = 60  # run records kept: two months of nights
LOG_LIMIT = 8 << 20  # a run log past this size is moved to `.1` at the start of the next run


def state_dir(env: Mapping[str, str]) -> Path:
    """`DEDUPE_STATE_DIR`, else `$XDG_STATE_HOME/dedupe` (an absolute one), else
    `~/.local/state/dedupe`."""
    explicit = env.get("DEDUPE_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_STATE_HOME", "")
    if Path(xdg).is_absolute():
        return Path(xdg) / "dedupe"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "dedupe"


@dataclass
class MediumRecord:
    """What the state folder remembers of one medium (the local repository, a drive, an
    off-site copy), by its name in the profile."""

    repo_id: str | None = None  # hex; a drive is recognised by it
    url: str | None = None
    last_copy: str | None = None  # ISO time of the last run that updated it
    last_snapshot: str | None = None  # ISO time of the newest snapshot it holds
    free_bytes: int | None = None
    checked: str | None = None  # ISO time these values were seen


@dataclass
class RunRecord:
    """One `dedupe run`: when, the result, each step and the warnings (the `run --json` shape)."""

    time: str
    ok: bool
    exit: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    profile: str = ""


class StateError(DedupeError):
    """The state folder cannot be read or written (exit 1)."""


class State:
    """The state folder of one profile. Profiles are told apart by file name, so two profiles
    on one server keep separate records."""

    def __init__(self, root: Path, profile_path: Path) -> None:
        self.root = root
        key = _profile_key(profile_path)
        self.media_file = root / f"media-{key}.json"
        self.runs_dir = root / f"runs-{key}"
        self.log_file = root / f"run-{key}.log"

    # --- media --------------------------------------------------------------------------

    def media(self) -> dict[str, MediumRecord]:
        data = self._read(self.media_file)
        records: dict[str, MediumRecord] = {}
        if isinstance(data, dict):
            known = set(MediumRecord.__dataclass_fields__)
            for name, value in data.items():
                if isinstance(value, dict):
                    records[name] = MediumRecord(**{k: v for k, v in value.items() if k in known})
        return records

    def save_media(self, records: Mapping[str, MediumRecord]) -> None:
        self._write(self.media_file, {name: asdict(rec) for name, rec in records.items()})

    # --- runs ---------------------------------------------------------------------------

    def save_run(self, record: RunRecord) -> Path:
        when = datetime.fromisoformat(record.time)
        name = f"{when.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json"
        path = self.runs_dir / name
        self._write(path, asdict(record))
        self._prune_runs()
        return path

    def last_run(self) -> RunRecord | None:
        """The newest run record (by the time it records), or None when there is none."""
        newest: RunRecord | None = None
        for path in self._run_files():
            data = self._read(path)
            if not isinstance(data, dict) or "time" not in data:
                continue
            try:
                record = RunRecord(
                    time=str(data["time"]),
                    ok=bool(data.get("ok")),
                    exit=int(data.get("exit", 1)),
                    steps=list(data.get("steps", [])),
                    warnings=list(data.get("warnings", [])),
                    profile=str(data.get("profile", "")),
                )
                when = datetime.fromisoformat(record.time)
            except (TypeError, ValueError):
                continue
            if newest is None or when >= datetime.fromisoformat(newest.time):
                newest = record
        return newest

    def start_log(self, header: str) -> None:
        """Begin a run's part of the log. A log past `LOG_LIMIT` is first moved to `<log>.1`
        (replacing the older one), so a nightly job never fills the server's disk with its own
        log, and the last night or two stay readable whole (the alert names the log)."""
        try:
            if self.log_file.stat().st_size > LOG_LIMIT:
                os.replace(self.log_file, self.log_file.with_name(self.log_file.name + ".1"))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateError(
                f"cannot rotate the run log {self.log_file}: {exc.strerror}. Check that the "
                f"state folder ({self.root}) is writable"
            ) from None
        self.append_log(header)

    def append_log(self, text: str) -> None:
        """Add to the run log (what each step printed), for the office's IT person."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.log_file, "a", encoding="utf-8", errors="replace") as log:
            log.write(text if text.endswith("\n") else text + "\n")

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held for a whole run: a second `dedupe run` of the same profile (a manual run while
        the timer fires) is refused, exit 11, rather than copying twice at once."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root / f"{self.log_file.stem}.lock"
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RepositoryLocked(
                    f"another 'dedupe run' of this profile is running now (lock {path}); "
                    "wait for it to finish"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # --- files --------------------------------------------------------------------------

    def _run_files(self) -> list[Path]:
        try:
            return sorted(p for p in self.runs_dir.iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateError(
                f"cannot read the run records in {self.runs_dir}: {exc.strerror}"
            ) from None

    def _prune_runs(self) -> None:
        files = self._run_files()
        for old in files[: max(0, len(files) - RUNS_KEPT)]:
            old.unlink(missing_ok=True)

    def _read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "it is not valid JSON"
            raise StateError(
                f"cannot read {path}: {why}. It is the state folder's record of earlier runs; "
                "move it aside (the next run writes a new one)"
            ) from None

    def _write(self, path: Path, value: Any) -> None:
        text = json.dumps(value, indent=2, sort_keys=True) + "\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(temporary, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            raise StateError(
                f"cannot write {path}: {exc.strerror}. Check that the state folder "
                f"({self.root}) is writable and its disk has room"
            ) from None


def _profile_key(profile_path: Path) -> str:
    """A short, stable, file-name-safe name for a profile: its file name plus a hash of its
    absolute path (two profiles called dedupe.toml in different folders stay apart)."""
    import hashlib

    absolute = os.path.abspath(profile_path)
    digest = hashlib.sha256(os.fsencode(absolute)).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(absolute).stem)[:40]
    return f"{stem}-{digest}"
