"""`dedupe archive` (copy, read back, hold with the reason, journal both sides, --release-here)
and `dedupe retire` (journal in the source, then no password opens the drive) (issue 20)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dedupe.repo import manifests
from tests.clitools import Cli
from tests.support import PASSWORD, open_repo

REASON = "fiscal year 2026, keep 10 years"


def make_source(root: Path) -> Path:
    root.mkdir()
    (root / "ledger.db").write_bytes(b"fiscal year ledger\n" * 4000)
    (root / "scan.pdf").write_bytes(os.urandom(150_000))
    return root


def second_repository(tmp_path: Path, name: str, *init_args: str) -> Cli:
    other = Cli(str(tmp_path / name), str(tmp_path / "cache"))
    other("init", *init_args)
    return other


def held_snapshot(cli: Cli, tmp_path: Path) -> str:
    source = make_source(tmp_path / "practice")
    sid = cli("snapshot", str(source), "--time", "2026-12-31T23:00:00+00:00", "--json").json()["id"]
    cli("hold", sid[:8], "--reason", "year end")
    return sid


def test_archive_copies_verifies_holds_there_and_journals_both_sides(cli, tmp_path):
    sid = held_snapshot(cli, tmp_path)
    archive = second_repository(tmp_path, "archive")
    result = cli(
        "archive", sid[:8], "--to", archive.repo, "--reason", REASON, "--release-here", "--json"
    ).json()
    assert result["archived"] == [sid] and result["copied"] == [sid]
    assert result["released_here"] == [sid] and result["verified_blobs"] > 0

    (there,) = archive("snapshots", "--json").json()
    assert there["id"] == sid and there["held"]
    assert Path(archive.repo, "holds", sid).exists()
    (here,) = cli("snapshots", "--json").json()
    assert not here["held"]  # released: the local policy may remove it now

    theirs = archive("journal", "--json").json()
    assert [(e["action"], e["direction"]) for e in theirs] == [("archive", "in")]
    assert theirs[0]["snapshots"] == [sid] and theirs[0]["reason"] == REASON
    assert theirs[0]["details"]["peer"] == cli.repo
    ours = cli("journal", "--json").json()
    assert [e["action"] for e in ours] == ["snapshot", "hold", "archive", "release"]
    assert ours[2]["direction"] == "out" and ours[2]["details"]["peer"] == archive.repo
    assert ours[2]["details"]["verified_blobs"] == result["verified_blobs"]
    page = cli("journal").text
    assert f"archived 1 backup to {archive.repo} ({REASON})" in page
    assert cli("check").code == 0 and archive("check", "--read-data").code == 0

    # The archive's hold is guarded there like any other: an unheld manifest written in its
    # place and the hold record deleted (a hold removed behind dedupe's back) is reported.
    repo = open_repo(archive.repo)
    manifests.save(repo, manifests.load(repo, sid).with_hold(False, None))
    os.unlink(os.path.join(archive.repo, "holds", sid))
    lost = archive("check", check=False)
    assert lost.code == 14 and f"the hold on snapshot {sid[:8]}" in lost.err
    assert REASON in lost.err


def damage_every_pack(repo: str) -> int:
    """Flip one byte inside the first blob of every pack (its seal no longer opens)."""
    packs = [
        os.path.join(d, f) for d, _s, files in os.walk(os.path.join(repo, "data")) for f in files
    ]
    for pack in packs:
        os.chmod(pack, 0o600)
        with open(pack, "r+b") as f:
            f.seek(30)
            byte = f.read(1)
            f.seek(30)
            f.write(bytes([byte[0] ^ 0xFF]))
    return len(packs)


def test_archive_whose_copy_does_not_read_back_releases_nothing(cli, tmp_path):
    sid = held_snapshot(cli, tmp_path)
    archive = second_repository(tmp_path, "archive")
    cli("copy", "--to", archive.repo)  # an earlier copy, damaged on the drive since
    assert damage_every_pack(archive.repo) > 0
    result = cli(
        "archive", sid[:8], "--to", archive.repo, "--reason", REASON, "--release-here", check=False
    )
    assert result.code == 14, result.err
    assert "could not be read back" in result.err and "nothing was released here" in result.err
    assert "Traceback" not in result.err
    (here,) = cli("snapshots", "--json").json()
    assert here["held"]  # still held here: the only good copy stays guarded
    actions = [e["action"] for e in cli("journal", "--json").json()]
    assert "archive" not in actions and "release" not in actions
    theirs = archive("journal", "--json").json()
    assert all(e["action"] != "archive" for e in theirs)
    (there,) = archive("snapshots", "--json").json()
    assert there["id"] == sid
    assert cli("check").code == 0


def test_retire_leaves_a_repository_no_password_opens(cli, tmp_path):
    source = make_source(tmp_path / "practice")
    cli("snapshot", str(source))
    drive = second_repository(tmp_path, "drive", "--same-key-as", cli.repo)
    cli("copy", "--to", drive.repo)
    on_drive = [s["id"] for s in drive("snapshots", "--json").json()]

    refused = cli("retire", "--repo", drive.repo, check=False)
    assert refused.code == 2 and "cannot be undone" in refused.err and "--yes" in refused.err
    assert drive("snapshots").code == 0  # nothing was done
    # DEDUPE_REPO names the source, never the repository destroyed.
    assert cli("retire", "--yes", check=False).code == 2

    export = tmp_path / "drive-key.txt"
    done = cli("retire", "--repo", drive.repo, "--yes", "--keep-key-export", str(export))
    assert "no password opens it any more" in done.text
    assert stat.S_IMODE(os.stat(export).st_mode) == 0o600 and export.stat().st_size > 0
    assert os.listdir(os.path.join(drive.repo, "keys")) == []
    for password in (PASSWORD, "another password"):
        opened = drive("snapshots", env={"DEDUPE_PASSWORD": password}, check=False)
        assert opened.code == 12, opened.err
        assert "was retired" in opened.err and "Traceback" not in opened.err
    again = drive("key", "import", str(export), check=False)
    assert again.code != 0 and "Traceback" not in again.err

    (entry,) = [e for e in cli("journal", "--json").json() if e["action"] == "retire"]
    assert entry["snapshots"] == on_drive and entry["details"]["peer"] == drive.repo
    assert entry["details"]["key_export_kept"] is True
    page = cli("journal").text
    assert f"retired {drive.repo} (taken out of rotation)" in page
    assert cli("check").code == 0
    # Run again (say, after an interruption): it finishes, needing no password.
    assert cli("retire", "--repo", drive.repo, "--yes").code == 0
