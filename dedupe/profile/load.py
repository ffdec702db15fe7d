"""Finding and reading the profile (`dedupe.toml`) into a `Profile`, or a UsageError (exit 2).

Every message names the file, the table and the key, and the line where it can be found, so an
office manager can fix the file: `dedupe.toml, line 14: unknown key 'keep-montly' in [policy]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from dedupe.errors import UsageError
from dedupe.profile.model import (
    DEFAULT_LOW_DISK_DAYS,
    DEFAULT_LOW_DISK_PERCENT,
    DEFAULT_OVERDUE_DAYS,
    Alerts,
    Drive,
    Offsite,
    Profile,
    RepositoryConfig,
    Source,
)
from dedupe.profile.policy import POLICY_KEYS, PolicySetting, parse_weekday, policy_from_settings
from dedupe.profile.tomlfile import key_lines, read_toml_text
from dedupe.retention import Policy

PROFILE_NAME = "dedupe.toml"
SYSTEM_PROFILE_DIR = Path("/etc/dedupe")

_TABLES = ("repository", "source", "policy", "drive", "offsite", "alerts")
_ARRAYS = ("source", "drive", "offsite")  # written [[name]], one table per entry


def find_profile(
    explicit: str | None,
    env: Mapping[str, str],
    cwd: str,
    *,
    system_dir: Path = SYSTEM_PROFILE_DIR,
) -> Path | None:
    """The profile to use, first found wins: `--profile FILE` (`explicit`), `DEDUPE_PROFILE`,
    `./dedupe.toml`, `$XDG_CONFIG_HOME/dedupe/dedupe.toml` (default `~/.config`), then
    `/etc/dedupe/dedupe.toml` (`system_dir`, for tests). None when there is none; a file named
    by `--profile` or `DEDUPE_PROFILE` that does not exist is a UsageError naming it."""
    base = Path(cwd)
    for value, origin in ((explicit, "--profile"), (env.get("DEDUPE_PROFILE"), "DEDUPE_PROFILE")):
        if value:
            path = base / Path(value).expanduser()
            if not path.is_file():
                why = "is a folder, not a file" if path.is_dir() else "does not exist"
                raise UsageError(f"profile {value} (from {origin}) {why}")
            return path
    config_home = env.get("XDG_CONFIG_HOME", "")
    if not Path(config_home).is_absolute():  # unset, empty or relative: ignored, as XDG says
        home = env.get("HOME") or str(Path.home())
        config_home = str(Path(home) / ".config")
    for candidate in (
        base / PROFILE_NAME,
        Path(config_home) / "dedupe" / PROFILE_NAME,
        system_dir / PROFILE_NAME,
    ):
        if candidate.is_file():
            return candidate
    return None


def load_profile(path: Path) -> Profile:
    """Read and check the profile at `path` (UsageError, exit 2, naming what is wrong)."""
    text, document = read_toml_text(path, "profile")
    reader = _Reader(path, key_lines(text))
    top = _Table(reader, document, "", 0, "the top level of the profile")
    top.reject_unknown(_TABLES, what="table")

    repository_table = top.table("repository")
    if repository_table is None:
        raise UsageError(f'{path}: no [repository] table; add one with url = "/path/to/repository"')
    repository = _repository(repository_table)
    sources = tuple(_source(table) for table in top.array("source"))
    policy_table = top.table("policy")
    policy = None if policy_table is None else _policy(policy_table)
    drives = tuple(_drive(table) for table in top.array("drive"))
    offsites = tuple(_offsite(table) for table in top.array("offsite"))
    alerts_table = top.table("alerts")
    alerts = Alerts() if alerts_table is None else _alerts(alerts_table)

    _unique(path, "[[source]]", [source.name for source in sources])
    _unique(path, "[[drive]] or [[offsite]]", [d.name for d in drives] + [o.name for o in offsites])
    return Profile(
        path=path,
        repository=repository,
        sources=sources,
        policy=policy,
        drives=drives,
        offsites=offsites,
        alerts=alerts,
    )


# --- the tables ------------------------------------------------------------------------------


def _repository(table: _Table) -> RepositoryConfig:
    table.reject_password()
    table.reject_unknown(("url", "password-file", "password-command"))
    password_file, password_command = table.password_settings()
    return RepositoryConfig(
        url=table.string("url", required=True) or "",
        password_file=password_file,
        password_command=password_command,
    )


def _source(table: _Table) -> Source:
    table.reject_unknown(("name", "paths", "exclude", "command", "stdin-name"))
    name = table.name()
    has_paths, has_command = "paths" in table.data, "command" in table.data
    if has_paths == has_command:
        raise UsageError(
            f"{table.where()}: {table.label} needs exactly one of paths (files and folders) "
            f"or command (a program whose output is saved)" + (", not both" if has_paths else "")
        )
    if has_command:
        if "exclude" in table.data:
            raise table.error("exclude", "applies to paths only, not to a command")
        command = table.string_list("command", nonempty=True)
        stdin_name = table.string("stdin-name")
        if stdin_name is None:
            raise UsageError(
                f"{table.where()}: {table.label} has a command but no stdin-name: the name its "
                f'output is saved under, e.g. stdin-name = "practice.sql"'
            )
        plain = stdin_name.strip("/")
        if not plain or plain in (".", "..") or "/" in plain or "\0" in plain:
            raise table.error("stdin-name", "must be a plain file name such as practice.sql")
        return Source(name=name, command=command, stdin_name=plain)
    if "stdin-name" in table.data:
        raise table.error("stdin-name", "goes with command only, not with paths")
    return Source(
        name=name,
        paths=table.string_list("paths", nonempty=True),
        exclude=table.string_list("exclude"),
    )


def _policy(table: _Table) -> Policy:
    table.reject_unknown(POLICY_KEYS)
    settings = {
        key: PolicySetting(value, f"{table.where(key)}: [policy] {key}", table.reader.path.parent)
        for key, value in table.data.items()
    }
    return policy_from_settings(settings)


def _drive(table: _Table) -> Drive:
    table.reject_unknown(("name", "mount", "url", "weekdays"))
    name = table.name()
    weekday_names = table.string_list("weekdays", required=True, nonempty=True)
    origin = f"{table.where('weekdays')}: weekdays of {table.label}"
    return Drive(
        name=name,
        mount=table.string("mount", required=True) or "",
        url=table.string("url", required=True) or "",
        weekdays=frozenset(parse_weekday(day, origin) for day in weekday_names),
    )


def _offsite(table: _Table) -> Offsite:
    table.reject_password()
    table.reject_unknown(("name", "url", "s3-endpoint", "password-file", "password-command"))
    name = table.name()
    password_file, password_command = table.password_settings()
    return Offsite(
        name=name,
        url=table.string("url", required=True) or "",
        s3_endpoint=table.string("s3-endpoint"),
        password_file=password_file,
        password_command=password_command,
    )


def _alerts(table: _Table) -> Alerts:
    table.reject_unknown(("urls", "low-disk-percent", "low-disk-days", "overdue-days"))
    percent = table.number("low-disk-percent", DEFAULT_LOW_DISK_PERCENT)
    if not 0 <= percent <= 100:
        raise table.error("low-disk-percent", f"must be between 0 and 100, not {percent}")
    low_disk_days = table.integer("low-disk-days", DEFAULT_LOW_DISK_DAYS)
    if low_disk_days < 0:
        raise table.error("low-disk-days", f"must be 0 or more, not {low_disk_days}")
    overdue_days = table.integer("overdue-days", DEFAULT_OVERDUE_DAYS)
    if overdue_days < 1:
        raise table.error("overdue-days", f"must be at least 1, not {overdue_days}")
    return Alerts(
        urls=table.string_list("urls"),
        low_disk_percent=float(percent),
        low_disk_days=low_disk_days,
        overdue_days=overdue_days,
    )


def _unique(path: Path, kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UsageError(
                f"{path}: two {kind} tables are named {name!r}; give each a different name"
            )
        seen.add(name)


# --- reading values with messages that point at them ---------------------------------------


class _Reader:
    """The profile's path and the lines of its keys, shared by its tables."""

    def __init__(self, path: Path, lines: dict[tuple[str, int, str], int]) -> None:
        self.path = path
        self.lines = lines


class _Table:
    """One TOML table of the profile: `data`, its name in the file and how to point at a key."""

    def __init__(
        self, reader: _Reader, data: dict[str, Any], name: str, index: int, label: str
    ) -> None:
        self.reader = reader
        self.data = data
        self.name_in_file = name
        self.index = index
        self.label = label

    def where(self, key: str | None = None) -> str:
        """'dedupe.toml, line 7' when the key's line is known, else 'dedupe.toml'."""
        line = None if key is None else self.reader.lines.get((self.name_in_file, self.index, key))
        return f"{self.reader.path}" if line is None else f"{self.reader.path}, line {line}"

    def error(self, key: str, problem: str) -> UsageError:
        return UsageError(f"{self.where(key)}: {key!r} in {self.label} {problem}")

    def reject_unknown(self, known: tuple[str, ...], what: str = "key") -> None:
        for key in self.data:
            if key not in known:
                hint = f" (did you mean {key.replace('_', '-')!r}?)" if "_" in key else ""
                raise UsageError(
                    f"{self.where(key)}: unknown {what} {key!r} in {self.label}{hint}; "
                    f"known {what}s: {', '.join(known)}"
                )

    def reject_password(self) -> None:
        if "password" in self.data:
            raise UsageError(
                f"{self.where('password')}: {self.label} must not hold the password itself; "
                "use password-file (a file holding it, readable only by the backup user) "
                "or password-command (a command that prints it)"
            )

    def _typed(self, key: str, value: Any, expected: str) -> UsageError:
        # Only a number is shown: a string or list may be a URL or command holding a secret.
        shown = f" {value!r}" if isinstance(value, int | float) else ""
        return self.error(key, f"must be {expected}, not {_toml_type(value)}{shown}")

    def string(self, key: str, *, required: bool = False) -> str | None:
        if key not in self.data:
            if required:
                raise UsageError(f'{self.where()}: {self.label} needs {key} = "..."')
            return None
        value = self.data[key]
        if not isinstance(value, str):
            raise self._typed(key, value, "a string")
        if not value.strip():
            raise self.error(key, "is empty")
        return value

    def string_list(
        self, key: str, *, required: bool = False, nonempty: bool = False
    ) -> tuple[str, ...]:
        if key not in self.data:
            if required:
                raise UsageError(f'{self.where()}: {self.label} needs {key} = ["..."]')
            return ()
        value = self.data[key]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._typed(key, value, 'a list of strings such as ["a", "b"]')
        if any(not item.strip() for item in value):
            raise self.error(key, "holds an empty string")
        if nonempty and not value:
            raise self.error(key, "is empty")
        return tuple(value)

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._typed(key, value, "a whole number")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            raise self._typed(key, value, "a number")
        return float(value)

    def name(self) -> str:
        name = self.string("name", required=True) or ""
        self.label = f"[[{self.name_in_file}]] {name!r}"
        return name

    def password_settings(self) -> tuple[Path | None, str | None]:
        if "password-file" in self.data and "password-command" in self.data:
            raise UsageError(
                f"{self.where('password-command')}: {self.label} has both password-file and "
                "password-command; keep one"
            )
        password_file = self.string("password-file")
        resolved = None
        if password_file is not None:
            resolved = self.reader.path.parent / Path(password_file).expanduser()
        return resolved, self.string("password-command")

    def table(self, key: str) -> _Table | None:
        """The `[key]` table, or None when absent."""
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise UsageError(
                f"{self.where(key)}: {key!r} must be a table written [{key}], "
                f"not {_toml_type(value)}"
            )
        return _Table(self.reader, value, key, 0, f"[{key}]")

    def array(self, key: str) -> list[_Table]:
        """The `[[key]]` tables, in order (none when absent)."""
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise UsageError(
                f"{self.where(key)}: {key!r} must be written as [[{key}]] tables, one per "
                f"{key}, not {_toml_type(value)}"
            )
        return [
            _Table(self.reader, item, key, index, f"[[{key}]] number {index + 1}")
            for index, item in enumerate(value)
        ]


def _toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date or time"
    return type(value).__name__
