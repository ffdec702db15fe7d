"""`latest` resolved per path, and the `--host/--tag/--path` filters, through the real CLI
(CONTRACT.md): where a command names a PATH, `latest` is the newest snapshot that holds it, so
the nightly pair (a folder, then a database dump as a second snapshot) serves both `cat latest
practice.sql` and `ls latest /srv/practice`; a path in no fitting snapshot is exit 2 with a
message naming the snapshot chosen (short id and time) and how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clitools import Cli, initialized_cli


@dataclass
class Nightly:
    """A repository after two nights of the README's job, then a laptop's backup."""

    cli: Cli
    practice: str  # the backed-up folder (absolute)
    ids: dict[str, str]  # night1-docs, night1-db, night2-docs, night2-db, laptop


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> Nightly:
    tmp = tmp_path_factory.mktemp("nightly")
    cli = initialized_cli(tmp)
    practice = tmp / "srv" / "practice"
    (practice / "letters").mkdir(parents=True)
    (practice / "letters" / "smith.txt").write_text("Dear Mrs Smith, version 1\n")
    (practice / "letters" / "old.txt").write_text("only on night 1\n")
    laptop = tmp / "laptop" / "notes"
    laptop.mkdir(parents=True)
    (laptop / "note.txt").write_text("laptop note\n")

    def folder(path: Path, when: str, host: str = "frontdesk") -> str:
        args = ("--json", "snapshot", str(path), "--host", host, "--tag", "docs", "--time", when)
        return cli(*args).json()["id"]

    def dump(data: bytes, when: str) -> str:
        args = ("snapshot", "-", "--stdin-name", "practice.sql", "--host", "frontdesk")
        return cli("--json", *args, "--tag", "db", "--time", when, input=data).json()["id"]

    ids = {
        "night1-docs": folder(practice, "2026-11-30T02:00:00+00:00"),
        "night1-db": dump(b"-- dump of night 1\n", "2026-11-30T02:05:00+00:00"),
    }
    (practice / "letters" / "smith.txt").write_text("Dear Mrs Smith, version 2\n")
    (practice / "letters" / "old.txt").unlink()
    ids["night2-docs"] = folder(practice, "2026-12-01T02:00:00+00:00")
    ids["night2-db"] = dump(b"-- dump of night 2\n", "2026-12-01T02:05:00+00:00")
    ids["laptop"] = folder(laptop, "2026-12-01T03:00:00+00:00", host="laptop")
    return Nightly(cli, str(practice), ids)


def listed(result) -> list[str]:
    return [item["path"] for item in result.json()]


def test_cat_latest_dump_and_ls_latest_folder_both_work(nightly: Nightly) -> None:
    cli = nightly.cli
    assert cli("cat", "latest", "practice.sql").out == b"-- dump of night 2\n"
    assert cli("cat", "latest", "/practice.sql").out == b"-- dump of night 2\n"
    result = cli("--json", "ls", "latest", nightly.practice)
    assert f"{nightly.practice}/letters/smith.txt" in listed(result)
    assert f"{nightly.practice}/letters/old.txt" not in listed(result)  # night 2's folder
    # The user hears that latest passed over newer snapshots, and which one it used.
    assert nightly.ids["night2-docs"][:8] in result.err
    assert "2026-12-01T02:00:00" in result.err
    smith = f"{nightly.practice}/letters/smith.txt"
    assert cli("cat", "latest", smith).out == b"Dear Mrs Smith, version 2\n"


def test_latest_is_the_newest_snapshot_that_holds_the_path(nightly: Nightly) -> None:
    # old.txt was deleted before night 2: latest for it is night 1's folder snapshot.
    old = f"{nightly.practice}/letters/old.txt"
    result = nightly.cli("cat", "latest", old)
    assert result.out == b"only on night 1\n"
    assert nightly.ids["night1-docs"][:8] in result.err


def test_latest_without_a_path_is_the_newest_snapshot(nightly: Nightly) -> None:
    result = nightly.cli("--json", "ls", "latest")
    assert any(path.endswith("/laptop/notes/note.txt") for path in listed(result))


def test_a_path_in_no_snapshot_names_the_newest_and_how_it_was_chosen(nightly: Nightly) -> None:
    missing = f"{nightly.practice}/letters/jones.txt"
    result = nightly.cli("cat", "latest", missing, check=False)
    assert result.code == 2 and "Traceback" not in result.err
    assert missing in result.err
    assert nightly.ids["laptop"][:8] in result.err and "2026-12-01T03:00:00" in result.err
    assert "newest snapshot that holds the path" in result.err
    assert "dedupe find" in result.err


def test_a_filter_changes_which_snapshot_latest_is(nightly: Nightly) -> None:
    cli = nightly.cli
    result = cli("ls", "latest", nightly.practice, "--host", "laptop", check=False)
    assert result.code == 2
    assert nightly.ids["laptop"][:8] in result.err and "with --host laptop" in result.err
    # Only db snapshots: the dump is there, the folder is not.
    assert cli("cat", "latest", "practice.sql", "--tag", "db").out == b"-- dump of night 2\n"
    result = cli("cat", "latest", "practice.sql", "--tag", "docs", check=False)
    assert result.code == 2 and "with --tag docs" in result.err
    assert nightly.ids["laptop"][:8] in result.err
    ls = cli("--json", "ls", "latest", "--host", "frontdesk", "--tag", "docs")
    assert f"{nightly.practice}/letters/smith.txt" in listed(ls)


def test_an_id_names_exactly_that_snapshot(nightly: Nightly) -> None:
    cli = nightly.cli
    night2 = nightly.ids["night2-docs"]
    old = f"{nightly.practice}/letters/old.txt"
    result = cli("cat", night2[:6], old, check=False)
    assert result.code == 2
    assert night2[:8] in result.err and "2026-12-01T02:00:00" in result.err
    assert f"named by id {night2[:6]}" in result.err
    # A filter the named snapshot does not fit is refused, not ignored.
    result = cli("ls", night2[:8], "--host", "laptop", check=False)
    assert result.code == 2 and "does not match --host laptop" in result.err
    result = cli("cat", night2[:8], nightly.practice, check=False)
    assert result.code == 2 and "is a folder, not a file" in result.err


def test_snapshots_filters(nightly: Nightly) -> None:
    cli = nightly.cli
    ids = nightly.ids

    def chosen(*args: str) -> set[str]:
        return {s["id"] for s in cli("--json", "snapshots", *args).json()}

    assert chosen() == set(ids.values())
    assert chosen("--host", "laptop") == {ids["laptop"]}
    assert chosen("--host", "laptop", "--host", "frontdesk") == set(ids.values())
    assert chosen("--tag", "db") == {ids["night1-db"], ids["night2-db"]}
    assert chosen("--tag", "db,docs") == set()  # both tags on one snapshot: none has them
    assert chosen("--tag", "db", "--tag", "docs") == set(ids.values())  # either
    assert chosen("--path", "practice.sql") == {ids["night1-db"], ids["night2-db"]}
    assert chosen("--path", nightly.practice + "/") == {ids["night1-docs"], ids["night2-docs"]}
    assert chosen("--host", "frontdesk", "--tag", "docs") == {
        ids["night1-docs"],
        ids["night2-docs"],
    }
    human = cli("snapshots", "--tag", "db").text
    assert "2 of 5 snapshots match --tag db" in human


def test_diff_resolves_latest_under_the_filter(nightly: Nightly) -> None:
    result = nightly.cli("--json", "diff", nightly.ids["night1-db"], "latest", "--tag", "db")
    assert result.json() == {"added": [], "removed": [], "changed": ["/practice.sql"]}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("snapshots", "--tag", ""), "--tag '' has an empty tag"),
        (("snapshots", "--tag", "db,"), "has an empty tag"),
        (("snapshots", "--host", " "), "--host needs a host name"),
        (("snapshots", "--path", "/"), "is not a path a snapshot backs up"),
        (("ls", "latest", "--host", "nowhere"), "no snapshot matches --host nowhere"),
        (("cat", "latest", "practice.sql", "--path", "/srv/other"), "no snapshot matches"),
    ],
)
def test_a_bad_filter_is_exit_2_with_a_message(nightly: Nightly, args, words) -> None:
    result = nightly.cli(*args, check=False)
    assert result.code == 2, result.err
    assert words in result.err and "Traceback" not in result.err
