"""Another tool's repository at --repo is named as such (exit 10), never "damaged" (exit 14),
and `init` leaves it alone. The layouts are built here file by file as each tool writes them."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from dedupe.repo import foreign
from dedupe.storage.local import LocalStorage
from tests.clitools import Cli, initialized_cli


def _restic(root: Path) -> None:
    """restic's layout: an encrypted `config`, keys/ and data/xx/ named by 64 hex digits."""
    for folder in ("keys", "snapshots", "index", "locks", "data/3f"):
        (root / folder).mkdir(parents=True)
    (root / "config").write_bytes(secrets.token_bytes(155))
    (root / "keys" / secrets.token_hex(32)).write_bytes(b'{"created":"2026-01-01","kdf":"scrypt"}')
    (root / "data" / "3f" / ("3f" + secrets.token_hex(31))).write_bytes(secrets.token_bytes(900))
    (root / "snapshots" / secrets.token_hex(32)).write_bytes(secrets.token_bytes(300))


def _borg1(root: Path) -> None:
    (root / "data" / "0").mkdir(parents=True)
    (root / "README").write_text(
        "This is a Borg Backup repository.\nSee https://borgbackup.readthedocs.io/\n"
    )
    (root / "config").write_text(
        "[repository]\nversion = 1\nsegments_per_dir = 1000\nmax_segment_size = 524288000\n"
        f"append_only = 0\nid = {secrets.token_hex(32)}\nkey = \n"
    )
    (root / "data" / "0" / "1").write_bytes(b"BORG_SEG" + secrets.token_bytes(100))


def _borg1_without_readme(root: Path) -> None:
    _borg1(root)
    (root / "README").unlink()


def _borg2(root: Path) -> None:
    for folder in ("config", "archives", "data/00/00", "keys", "locks"):
        (root / folder).mkdir(parents=True)
    (root / "config" / "id").write_text(secrets.token_hex(32))
    (root / "config" / "version").write_text("2")
    (root / "archives" / secrets.token_hex(32)).write_bytes(b"")


def _kopia(root: Path) -> None:
    root.mkdir()
    (root / "kopia.repository.f").write_text('{"tool":"kopia","uniqueID":"x"}')
    (root / "p0123456789abcdef-s0").write_bytes(secrets.token_bytes(64))


def _duplicacy(root: Path) -> None:
    for folder in ("chunks/ab", "snapshots/office"):
        (root / folder).mkdir(parents=True)
    (root / "config").write_bytes(b"duplicacy\x00" + secrets.token_bytes(100))
    (root / "chunks" / "ab" / secrets.token_hex(31)).write_bytes(secrets.token_bytes(100))
    (root / "snapshots" / "office" / "1").write_bytes(secrets.token_bytes(100))


LAYOUTS = [
    (_restic, "restic"),
    (_borg1, "Borg"),
    (_borg1_without_readme, "Borg"),
    (_borg2, "Borg 2"),
    (_kopia, "kopia"),
    (_duplicacy, "duplicacy"),
]


@pytest.mark.parametrize("make, tool", LAYOUTS)
def test_identify_names_the_tool(tmp_path, make, tool):
    root = tmp_path / "other"
    make(root)
    found = foreign.identify(LocalStorage(str(root)))
    assert found is not None and found.tool == tool


@pytest.mark.parametrize("make, tool", LAYOUTS)
def test_commands_say_whose_repository_it_is_exit_10(tmp_path, make, tool):
    root = tmp_path / "other"
    make(root)
    before = sorted(str(p) for p in root.rglob("*"))
    cli = Cli(str(root), str(tmp_path / "cache"))
    for args in (("snapshots",), ("check",), ("ls", "latest")):
        result = cli(*args, check=False)
        assert result.code == 10, result.err
        assert f"this is a {tool} repository, not a dedupe one" in result.err
        assert "damaged" not in result.err and "Traceback" not in result.err
    result = cli("init", check=False)
    assert result.code == 2 and f"this is a {tool} repository" in result.err
    assert "Nothing was created" in result.err
    assert sorted(str(p) for p in root.rglob("*")) == before  # nothing written, by anyone


def test_same_key_as_another_tools_repository_is_named(tmp_path):
    restic = tmp_path / "restic"
    _restic(restic)
    cli = Cli(str(tmp_path / "new"), str(tmp_path / "cache"))
    result = cli("init", "--same-key-as", str(restic), check=False)
    assert result.code == 10 and "this is a restic repository" in result.err
    assert not (tmp_path / "new").exists() or not os.listdir(tmp_path / "new")


def test_our_own_damaged_config_is_still_damage(tmp_path):
    cli = initialized_cli(tmp_path)
    config = Path(cli.repo) / "config"
    config.write_bytes(config.read_bytes()[:-7] + b"garbage")
    result = cli("snapshots", check=False)
    assert result.code in (12, 14), result.err  # not mistaken for another tool's
    assert "not a dedupe one" not in result.err
    assert foreign.identify(LocalStorage(cli.repo)) is None


def test_a_dedupe_repository_and_plain_folders_are_nobody_elses(tmp_path):
    cli = initialized_cli(tmp_path)
    assert foreign.identify(LocalStorage(cli.repo)) is None
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "config").write_text("[settings]\n")  # a file that happens to be called config
    (documents / "README").write_text("office notes")
    assert foreign.identify(LocalStorage(str(documents))) is None
    result = Cli(str(documents), str(tmp_path / "cache"))("snapshots", check=False)
    assert result.code in (10, 14) and "not a dedupe one" not in result.err
