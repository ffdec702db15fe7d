"""`copy` is journalled on both sides (issue 20): the destination says what it received and from
where, the source what it sent and to where; a copy with nothing to move journals nothing."""

from __future__ import annotations

from pathlib import Path

from tests.clitools import initialized_cli


def test_a_copy_is_in_both_journals(tmp_path: Path) -> None:
    cli = initialized_cli(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "letter.txt").write_text("Dear Mrs. Smith\n")
    snap = cli("snapshot", str(tmp_path / "docs"), "--json").json()["id"]
    drive = str(tmp_path / "drive")
    cli("init", "--same-key-as", cli.repo, env={"DEDUPE_REPO": drive})
    cli("copy", "--to", drive)

    def copies(repo: str) -> list[dict]:
        entries = cli("journal", "--json", env={"DEDUPE_REPO": repo}).json()
        return [e for e in entries if e["action"] == "copy"]

    received, sent = copies(drive), copies(cli.repo)
    assert len(received) == 1 and len(sent) == 1
    assert snap in received[0]["snapshots"] and snap in sent[0]["snapshots"]
    cli("copy", "--to", drive)  # nothing left to move: nothing more journalled
    assert len(copies(drive)) == 1 and len(copies(cli.repo)) == 1
