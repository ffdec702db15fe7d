"""Tests of the profile (`dedupe.profile`): finding `dedupe.toml`, reading it into frozen values,
and refusing a bad one with a UsageError (exit 2) that names the key, its table and its line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from dedupe.errors import UsageError
from dedupe.profile import (
    Alerts,
    Drive,
    Offsite,
    Profile,
    RepositoryConfig,
    Source,
    find_profile,
    load_profile,
)
from dedupe.retention import UNLIMITED, Policy

# The contract's example profile, as printed there.
CONTRACT_PROFILE = """\
[repository]                        # the local repository
url = "/srv/backup/repo"
password-file = "/etc/dedupe/password"   # or password-command; never the password itself

[[source]]
name = "documents"
paths = ["/srv/practice"]
exclude = ["*.tmp"]

[[source]]
name = "database"
command = ["pg_dump", "practice"]   # stdout is the stream; non-zero exit fails this source
stdin-name = "practice.sql"

[policy]                            # the keys of a --policy file
keep-business-days = 10
keep-monthly = "unlimited"

[[drive]]                           # rotating external drives
name = "monday"
mount = "/media/backup-monday"      # must be a mount point when the job runs
url = "/media/backup-monday/repo"
weekdays = ["mon"]

[[offsite]]
name = "cloud"
url = "s3://practice-backups/offsite"
s3-endpoint = "https://s3.example.net"
password-file = "/etc/dedupe/offsite-password"   # default: the repository's

[alerts]
urls = ["mailto://user:pass@mail.example.net?to=office@example.net"]   # Apprise URLs
low-disk-percent = 10               # warn when the repository's disk has less free
low-disk-days = 14                  # warn when the forecast fills it sooner
overdue-days = 8                    # a drive not updated for longer is overdue
"""

MINIMAL = '[repository]\nurl = "/srv/backup/repo"\n'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> Profile:
    return load_profile(write(tmp_path / "dedupe.toml", text))


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(UsageError) as caught:
        load_text(tmp_path, text)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "dedupe.toml" in message
    return message


# --- the contract's example -----------------------------------------------------------------


def test_contract_example_loads_into_the_expected_values(tmp_path: Path) -> None:
    path = write(tmp_path / "dedupe.toml", CONTRACT_PROFILE)
    assert load_profile(path) == Profile(
        path=path,
        repository=RepositoryConfig(
            url="/srv/backup/repo", password_file=Path("/etc/dedupe/password")
        ),
        sources=(
            Source(name="documents", paths=("/srv/practice",), exclude=("*.tmp",)),
            Source(name="database", command=("pg_dump", "practice"), stdin_name="practice.sql"),
        ),
        policy=Policy(keep_business_days=10, keep_monthly=UNLIMITED),
        drives=(
            Drive(
                name="monday",
                mount="/media/backup-monday",
                url="/media/backup-monday/repo",
                weekdays=frozenset({0}),
            ),
        ),
        offsites=(
            Offsite(
                name="cloud",
                url="s3://practice-backups/offsite",
                s3_endpoint="https://s3.example.net",
                password_file=Path("/etc/dedupe/offsite-password"),
            ),
        ),
        alerts=Alerts(
            urls=("mailto://user:pass@mail.example.net?to=office@example.net",),
            low_disk_percent=10.0,
            low_disk_days=14,
            overdue_days=8,
        ),
    )


def test_profile_values_are_frozen(tmp_path: Path) -> None:
    profile = load_text(tmp_path, CONTRACT_PROFILE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.repository.url = "/elsewhere"  # type: ignore[misc]
    assert profile.sources[1].is_command and not profile.sources[0].is_command


def test_minimal_profile_takes_the_defaults(tmp_path: Path) -> None:
    profile = load_text(tmp_path, MINIMAL)
    assert profile.repository == RepositoryConfig(url="/srv/backup/repo")
    assert profile.sources == () and profile.drives == () and profile.offsites == ()
    assert profile.policy is None
    assert profile.alerts == Alerts()


def test_relative_files_are_read_from_the_profile_folder(tmp_path: Path) -> None:
    write(tmp_path / "holidays.txt", "2026-12-25\n")
    profile = load_text(
        tmp_path,
        '[repository]\nurl = "repo"\npassword-command = "pass show office"\n'
        '[policy]\nkeep-last = 3\nholidays-file = "holidays.txt"\n'
        '[[offsite]]\nname = "cloud"\nurl = "s3://b/p"\npassword-file = "offsite.pw"\n'
        '[[drive]]\nname = "a"\nmount = "/m"\nurl = "/m/r"\nweekdays = ["Monday", "sat"]\n',
    )
    assert profile.repository.password_command == "pass show office"
    assert profile.offsites[0].password_file == tmp_path / "offsite.pw"
    assert profile.policy is not None and len(profile.policy.holidays) == 1
    assert profile.drives[0].weekdays == frozenset({0, 5})


# --- refused profiles ------------------------------------------------------------------------

DRIVE = '[[drive]]\nname = "monday"\nmount = "/m"\nurl = "/m/repo"\nweekdays = ["mon"]\n'
OFFSITE = '[[offsite]]\nname = "cloud"\nurl = "s3://bucket/p"\n'
DOCS = '[[source]]\nname = "documents"\npaths = ["/srv"]\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "colour = 1\n", r"line 3: unknown key 'colour' in \[repository\]"),
        (MINIMAL + '[[source]]\nname = "d"\npaths = ["/srv"]\nexcludes = []\n',
         r"line 6: unknown key 'excludes' in \[\[source\]\] number 1"),
        (MINIMAL + '[policy]\nkeep-last = 3\nkeep-montly = 2\n',
         r"line 5: unknown key 'keep-montly' in \[policy\]"),
        (MINIMAL + DRIVE + "label = 'x'\n",
         r"line 8: unknown key 'label' in \[\[drive\]\] number 1"),
        (MINIMAL + OFFSITE + "region = 'x'\n",
         r"line 6: unknown key 'region' in \[\[offsite\]\] number 1"),
        (MINIMAL + "[alerts]\nurls = []\nlow_disk_percent = 5\n",
         r"line 5: unknown key 'low_disk_percent' in \[alerts\] \(did you mean 'low-disk-percent'"),
        ("retention = 3\n" + MINIMAL, r"line 1: unknown table 'retention' in the top level"),
        (MINIMAL + "[sources]\nname = 'x'\n", r"unknown table 'sources'"),
    ],
)  # fmt: skip
def test_unknown_keys_name_the_key_its_table_and_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert re.search(expected, refused(tmp_path, text))


@pytest.mark.parametrize("table", ["repository", "offsite"])
def test_a_password_in_the_profile_is_refused(tmp_path: Path, table: str) -> None:
    secret = "hunter2-secret"
    if table == "repository":
        text = f'[repository]\nurl = "/r"\npassword = "{secret}"\n'
    else:
        text = MINIMAL + OFFSITE + f'password = "{secret}"\n'
    message = refused(tmp_path, text)
    assert "password-file" in message and "password-command" in message
    assert secret not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + '[[source]]\nname = "x"\npaths = ["/srv"]\ncommand = ["pg_dump"]\n'
         'stdin-name = "a.sql"\n', r"exactly one of paths .* or command .*not both"),
        (MINIMAL + '[[source]]\nname = "x"\n', r"'x' needs exactly one of paths"),
        (MINIMAL + '[[source]]\nname = "db"\ncommand = []\nstdin-name = "a.sql"\n',
         r"line 5: 'command' in \[\[source\]\] 'db' is empty"),
        (MINIMAL + '[[source]]\nname = "db"\ncommand = ["pg_dump"]\n', r"no stdin-name"),
        (MINIMAL + '[[source]]\nname = "db"\ncommand = ["pg_dump"]\nstdin-name = "a/b"\n',
         r"'stdin-name' .* plain file name"),
        (MINIMAL + '[[source]]\nname = "d"\npaths = ["/srv"]\nstdin-name = "a"\n',
         r"'stdin-name' .* command only"),
        (MINIMAL + '[[source]]\nname = "db"\ncommand = "pg_dump practice"\nstdin-name = "a"\n',
         r"line 5: 'command' in \[\[source\]\] 'db' must be a list of strings"),
        (MINIMAL + '[[source]]\npaths = ["/srv"]\n', r"\[\[source\]\] number 1 needs name"),
    ],
)  # fmt: skip
def test_bad_sources_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert re.search(expected, refused(tmp_path, text))


@pytest.mark.parametrize(
    ("weekdays", "expected"),
    [
        ('["mon", "fry"]', r"line 7: weekdays of \[\[drive\]\] 'monday': 'fry' is not a weekday"),
        ("[]", r"line 7: 'weekdays' in \[\[drive\]\] 'monday' is empty"),
        ('"mon"', r"'weekdays' .* must be a list of strings"),
    ],
)
def test_bad_weekdays_are_refused(tmp_path: Path, weekdays: str, expected: str) -> None:
    text = MINIMAL + DRIVE.replace('["mon"]', weekdays)
    assert re.search(expected, refused(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + DOCS + DOCS, r"two \[\[source\]\] tables are named 'documents'"),
        (MINIMAL + DRIVE + DRIVE, r"two \[\[drive\]\] or \[\[offsite\]\] tables .* 'monday'"),
        (MINIMAL + OFFSITE + OFFSITE, r"named 'cloud'"),
        (MINIMAL + DRIVE + OFFSITE.replace("cloud", "monday"), r"named 'monday'"),
    ],
)
def test_duplicate_names_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert re.search(expected, refused(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[repository]\nurl = 5\n",
         r"line 2: 'url' in \[repository\] must be a string, not an integer"),
        ('[repository]\npassword-file = "/p"\n', r"\[repository\] needs url"),
        ("[alerts]\noverdue-days = \"8\"\n",
         r"line 4: 'overdue-days' in \[alerts\] must be a whole number, not a string"),
        ("[alerts]\nlow-disk-percent = 120\n", r"'low-disk-percent' .* between 0 and 100"),
        ("[alerts]\nlow-disk-days = -1\n", r"'low-disk-days' .* 0 or more"),
        ("[alerts]\noverdue-days = 0\n", r"'overdue-days' .* at least 1"),
        ("[alerts]\nlow-disk-days = true\n", r"must be a whole number, not a boolean"),
        ("[alerts]\nurls = \"mailto://x\"\n", r"'urls' in \[alerts\] must be a list of strings"),
        ("[policy]\nkeep-last = -3\n", r"line \d+: \[policy\] keep-last: -3 is negative"),
        ("[policy]\nkeep-daily = 2.5\n", r"\[policy\] keep-daily: 2.5 is not a whole number"),
        ("[[policy]]\nkeep-last = 1\n", r"'policy' must be a table written \[policy\]"),
        ("[source]\nname = 'x'\n", r"'source' must be written as \[\[source\]\] tables"),
        ('[[offsite]]\nname = "c"\nurl = "s3://b"\npassword-file = "/a"\npassword-command = "b"\n',
         r"both password-file and password-command"),
    ],
)  # fmt: skip
def test_wrong_types_and_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    if not text.startswith("[repository]"):
        text = MINIMAL + text
    assert re.search(expected, refused(tmp_path, text))


def test_a_misplaced_alert_url_is_not_echoed(tmp_path: Path) -> None:
    message = refused(tmp_path, MINIMAL + '[alerts]\nurls = "mailto://office:s3cret@mail"\n')
    assert (
        "must be a list of strings" in message
        and "not a string" in message
        and "s3cret" not in message
    )


def test_no_repository_table_is_refused(tmp_path: Path) -> None:
    assert "no [repository] table" in refused(tmp_path, DOCS)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (MINIMAL.encode() + b'[[source]]\nname = "caf\xe9"\n', r"not UTF-8 text \(line 4\)"),
        (MINIMAL.encode() + b"[alerts]\nlow-disk-days = 1 2\n", r"not valid TOML: .*line 4"),
        (b"[repository\nurl = 1\n", r"not valid TOML: .*line 1"),
    ],
)
def test_files_that_are_not_utf8_or_not_toml_name_the_file_and_line(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "dedupe.toml"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=expected) as caught:
        load_profile(path)
    assert str(path) in str(caught.value)


def test_unreadable_profile_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read profile"):
        load_profile(tmp_path / "absent.toml")


# --- finding the profile ---------------------------------------------------------------------


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """A working folder, a config home and a stand-in for /etc/dedupe, each with a profile."""
    found = {
        "cwd": tmp_path / "work",
        "config": tmp_path / "config",
        "etc": tmp_path / "etc-dedupe",
        "home": tmp_path / "home",
    }
    for folder in found.values():
        folder.mkdir()
    write(found["cwd"] / "dedupe.toml", MINIMAL)
    write(found["config"] / "dedupe" / "dedupe.toml", MINIMAL)
    write(found["home"] / ".config" / "dedupe" / "dedupe.toml", MINIMAL)
    write(found["etc"] / "dedupe.toml", MINIMAL)
    return found


def test_search_order(places: dict[str, Path], tmp_path: Path) -> None:
    explicit = write(tmp_path / "explicit.toml", MINIMAL)
    from_env = write(tmp_path / "env.toml", MINIMAL)
    env = {"DEDUPE_PROFILE": str(from_env), "XDG_CONFIG_HOME": str(places["config"])}
    cwd, etc = str(places["cwd"]), places["etc"]

    def find(explicit_arg: str | None = None) -> Path | None:
        return find_profile(explicit_arg, env, cwd, system_dir=etc)

    assert find(str(explicit)) == explicit
    assert find() == from_env
    del env["DEDUPE_PROFILE"]
    assert find() == places["cwd"] / "dedupe.toml"
    (places["cwd"] / "dedupe.toml").unlink()
    assert find() == places["config"] / "dedupe" / "dedupe.toml"
    (places["config"] / "dedupe" / "dedupe.toml").unlink()
    assert find() == etc / "dedupe.toml"
    (etc / "dedupe.toml").unlink()
    assert find() is None


def test_config_home_defaults_to_dot_config(places: dict[str, Path]) -> None:
    (places["cwd"] / "dedupe.toml").unlink()
    for env in (
        {"HOME": str(places["home"])},
        {"HOME": str(places["home"]), "XDG_CONFIG_HOME": ""},
    ):
        found = find_profile(None, env, str(places["cwd"]), system_dir=places["etc"])
        assert found == places["home"] / ".config" / "dedupe" / "dedupe.toml"


def test_relative_explicit_profile_is_found_from_cwd(places: dict[str, Path]) -> None:
    write(places["cwd"] / "office.toml", MINIMAL)
    found = find_profile("office.toml", {}, str(places["cwd"]), system_dir=places["etc"])
    assert found == places["cwd"] / "office.toml"


@pytest.mark.parametrize("origin", ["--profile", "DEDUPE_PROFILE"])
def test_a_named_profile_that_does_not_exist_is_a_usage_error(
    places: dict[str, Path], tmp_path: Path, origin: str
) -> None:
    missing = str(tmp_path / "missing.toml")
    explicit, env = (missing, {}) if origin == "--profile" else (None, {"DEDUPE_PROFILE": missing})
    with pytest.raises(UsageError, match=rf"profile {re.escape(missing)} \(from {origin}\)"):
        find_profile(explicit, env, str(places["cwd"]), system_dir=places["etc"])
