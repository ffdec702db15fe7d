"""Hold records (`holds/<snapshot id>`) through the real CLI: a held snapshot whose manifest is
deleted, or replaced by an older unheld copy, is reported by `check` (exit 14) and still kept by
`forget` and `--max-backups`; `release` removes the record; the record is sealed."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clitools import Cli, initialized_cli
from tests.support import all_stored_bytes

REASON = "legal hold 2026-17 Smith"


@dataclass
class Repo:
    cli: Cli
    root: Path
    old: str  # the older snapshot, the one held in the tests
    new: str

    def manifest(self, snapshot_id: str) -> Path:
        return self.root / "snapshots" / snapshot_id

    def record(self, snapshot_id: str) -> Path:
        return self.root / "holds" / snapshot_id


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    cli = initialized_cli(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "letter.txt").write_bytes(b"patient letter\n")
    old = cli("snapshot", str(src), "--time", "2026-01-05T23:00:00+01:00", "--json").json()["id"]
    (src / "letter.txt").write_bytes(b"patient letter, revised\n")
    new = cli("snapshot", str(src), "--time", "2026-01-06T23:00:00+01:00", "--json").json()["id"]
    return Repo(cli, tmp_path / "repo", old, new)


def test_check_reports_a_held_snapshot_whose_manifest_was_deleted(repo: Repo) -> None:
    repo.cli("hold", repo.old, "--reason", REASON)
    assert repo.record(repo.old).is_file()
    assert repo.cli("check").code == 0
    repo.manifest(repo.old).unlink()
    result = repo.cli("check", check=False)
    assert result.code == 14
    assert repo.old[:8] in result.err and REASON in result.err
    assert "manifest was deleted" in result.err


def test_older_unheld_copy_is_reported_and_forget_refuses_to_remove_it(
    repo: Repo, tmp_path: Path
) -> None:
    unheld_copy = tmp_path / "unheld-manifest"
    shutil.copyfile(repo.manifest(repo.old), unheld_copy)
    repo.cli("hold", repo.old, "--reason", REASON)
    shutil.copyfile(unheld_copy, repo.manifest(repo.old))  # put back the older, unheld copy

    result = repo.cli("check", check=False)
    assert result.code == 14
    assert repo.old[:8] in result.err and REASON in result.err
    assert "replaced by an older copy that is not held" in result.err

    # --keep-last 1 would remove the older snapshot; its hold record keeps it.
    forget = repo.cli("forget", "--keep-last", "1", "--json", check=False)
    assert forget.code == 14
    kept = {item["id"]: item["reasons"] for item in forget.json()["keep"]}
    assert "held" in kept[repo.old]
    assert repo.manifest(repo.old).is_file()
    assert "hold record" in forget.err

    capped = repo.cli("forget", "--keep-last", "5", "--max-backups", "1", check=False)
    assert capped.code == 14
    assert repo.manifest(repo.old).is_file()
    # The one over the cap that may go is the newer, unheld snapshot.
    assert not repo.manifest(repo.new).exists()


def test_release_removes_the_record_and_check_passes(repo: Repo) -> None:
    repo.cli("hold", repo.old, "--reason", REASON)
    repo.cli("release", repo.old)
    assert not repo.record(repo.old).exists()
    assert repo.cli("check").code == 0
    repo.cli("forget", "--keep-last", "1")
    assert not repo.manifest(repo.old).exists()


def test_release_of_a_replaced_manifest_removes_its_record(repo: Repo, tmp_path: Path) -> None:
    unheld_copy = tmp_path / "unheld-manifest"
    shutil.copyfile(repo.manifest(repo.old), unheld_copy)
    repo.cli("hold", repo.old)
    shutil.copyfile(unheld_copy, repo.manifest(repo.old))
    result = repo.cli("release", repo.old)
    assert "released" in result.text
    assert not repo.record(repo.old).exists()
    assert repo.cli("check").code == 0


def test_hold_record_is_sealed(repo: Repo) -> None:
    repo.cli("hold", repo.old, "--reason", REASON)
    record = repo.record(repo.old).read_bytes()
    assert REASON.encode() not in record and b"legal" not in record
    assert REASON.encode() not in all_stored_bytes(str(repo.root))


def test_held_manifest_without_record_is_a_warning_until_held_again(repo: Repo) -> None:
    repo.cli("hold", repo.old, "--reason", REASON)
    repo.record(repo.old).unlink()  # as if held before hold records existed
    result = repo.cli("check")
    assert result.code == 0
    assert "no hold record" in result.err and repo.old[:8] in result.err
    repo.cli("hold", repo.old)
    assert repo.record(repo.old).is_file()
    result = repo.cli("check")
    assert "no hold record" not in result.err
    # Holding again without --reason kept the reason, in the manifest and in the record.
    repo.manifest(repo.old).unlink()
    assert REASON in repo.cli("check", check=False).err


def test_damaged_hold_record_keeps_its_snapshot(repo: Repo, tmp_path: Path) -> None:
    unheld_copy = tmp_path / "unheld-manifest"
    shutil.copyfile(repo.manifest(repo.old), unheld_copy)
    repo.cli("hold", repo.old, "--reason", REASON)
    shutil.copyfile(unheld_copy, repo.manifest(repo.old))
    repo.record(repo.old).write_bytes(b"\x00" * 64)  # unreadable, but it still names the hold
    check = repo.cli("check", check=False)
    assert check.code == 14 and "hold record" in check.err
    forget = repo.cli("forget", "--keep-last", "1", check=False)
    assert forget.code == 14
    assert repo.manifest(repo.old).is_file()
