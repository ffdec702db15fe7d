"""`restore --dry-run / --exclude / --overwrite / --verify` and the progress total, through the
real CLI on real folders. Whether a file was left alone or replaced is told by its inode: every
write makes a new file and renames it into place, so an untouched file keeps its inode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dedupe.backup.walkparts import Excluder
from dedupe.repo import manifests
from dedupe.restore.steps import selected_bytes
from tests.clitools import Cli, initialized_cli
from tests.support import digest_tree, open_repo

SNAP_MTIME = 1_767_261_600 * 10**9  # 2026-01-01 10:00 UTC: every file's mtime in the backup
HOUR = 3600 * 10**9


def _write(path: Path, data: bytes, mtime_ns: int = SNAP_MTIME) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def make_source(src: Path) -> None:
    for name in ("same", "older", "newer", "touched", "disguised", "missing"):
        _write(src / "letters" / f"{name}.txt", f"letter {name}\n".encode() * 50)
    _write(src / "letters" / "draft.tmp", b"scratch")
    _write(src / "scans" / "scan1.pdf", bytes(range(256)) * 400)
    _write(src / "scans" / "old" / "scan0.pdf", b"old scan" * 3000)
    _write(src / "notes.txt", b"notes\n")
    os.symlink("notes.txt", src / "notes-link")


@pytest.fixture
def backed_up(tmp_path) -> tuple[Cli, Path, str]:
    src = tmp_path / "src"
    make_source(src)
    cli = initialized_cli(tmp_path)
    sid = cli("snapshot", str(src), "--json").json()["id"]
    return cli, src, sid


def listing(root: Path) -> dict[str, tuple]:
    """Everything under root, root too: type and mode, size, mtime, inode, owner, link target."""
    out: dict[str, tuple] = {}
    if not os.path.lexists(root):
        return out
    paths = [str(root)]
    for folder, dirs, files in os.walk(root):
        paths += [os.path.join(folder, name) for name in dirs + files]
    for path in paths:
        st = os.lstat(path)
        link = os.readlink(path) if os.path.islink(path) else None
        out[os.path.relpath(path, root)] = (
            st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, st.st_uid, link,
        )  # fmt: skip
    return out


def prepare_target(target: Path, src: Path) -> Path:
    """A target holding an earlier restore of src's letters, since changed in five ways."""
    letters = Path(str(target) + str(src)) / "letters"
    for name in ("same", "older", "newer", "touched", "disguised"):
        original = (src / "letters" / f"{name}.txt").read_bytes()
        _write(letters / f"{name}.txt", original)
    _write(letters / "older.txt", b"an older version\n", SNAP_MTIME - 24 * HOUR)
    _write(letters / "newer.txt", b"edited after the backup\n", SNAP_MTIME + 24 * HOUR)
    same_size = (src / "letters" / "touched.txt").read_bytes()
    _write(letters / "touched.txt", same_size, SNAP_MTIME + HOUR)  # same content, new time
    disguised = bytearray((src / "letters" / "disguised.txt").read_bytes())
    disguised[10] ^= 0xFF  # same size, same time, different content (what a shortcut misses)
    _write(letters / "disguised.txt", bytes(disguised))
    return letters


def inodes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in folder.iterdir()}


# --- --dry-run ----------------------------------------------------------------------------------


def test_dry_run_touches_nothing_and_says_what_would_happen(backed_up, tmp_path):
    cli, src, sid = backed_up
    target = tmp_path / "t"
    prepare_target(target, src)
    before = listing(target)
    result = cli("restore", sid, "--target", str(target), "--dry-run", "--json")
    assert listing(target) == before
    report = result.json()
    assert report["dry_run"] is True and report["overwrite"] == "if-changed"
    actions = {item["path"]: (item["action"], item["reason"]) for item in report["items"]}
    letters = f"{src}/letters"
    assert actions[f"{letters}/same.txt"] == ("skip", "unchanged")
    assert actions[f"{letters}/touched.txt"] == ("skip", "unchanged")  # compared by content
    assert actions[f"{letters}/disguised.txt"] == ("skip", "unchanged")  # size and time match
    assert actions[f"{letters}/older.txt"][0] == "overwrite"
    assert actions[f"{letters}/newer.txt"][0] == "overwrite"
    assert actions[f"{letters}/missing.txt"] == ("create", "")
    assert actions[f"{src}/notes-link"] == ("create", "")
    assert actions[letters] == ("exists", "exists")
    assert actions[f"{src}/scans"] == ("create", "")
    assert report["counts"] == {"create": 6, "overwrite": 2, "skip": 3, "conflict": 0}
    sizes = {item["path"]: item["size"] for item in report["items"]}
    assert report["bytes_to_write"] == sum(
        sizes[p] for p, (action, _r) in actions.items() if action in ("create", "overwrite")
    )
    # Human output too, and a target that does not exist is not created.
    fresh = tmp_path / "nowhere"
    human = cli("restore", sid, "--target", str(fresh), "--dry-run", "--overwrite", "never")
    assert not os.path.lexists(fresh)
    assert f"would create {src}/letters/same.txt" in human.text
    assert "nothing was changed" in human.text and "would create 11 files" in human.text
    # What the dry run said is what the restore does.
    done = cli("restore", sid, "--target", str(target), "--json").json()
    assert (done["created"], done["overwritten"], done["unchanged"]) == (6, 2, 3)


def test_dry_run_never_looks_through_a_symlink_in_the_target(backed_up, tmp_path):
    cli, src, sid = backed_up
    outside = tmp_path / "outside"
    _write(outside / "same.txt", (src / "letters" / "same.txt").read_bytes())
    target = tmp_path / "t"
    place = Path(str(target) + str(src))
    place.mkdir(parents=True)
    os.symlink(outside, place / "letters")
    before = listing(outside)
    result = cli("restore", sid, "--target", str(target), "--dry-run", "--json")
    actions = {item["path"]: item["action"] for item in result.json()["items"]}
    assert actions[f"{src}/letters"] == "conflict"
    assert actions[f"{src}/letters/same.txt"] == "create"  # not "unchanged" through the link
    assert "not a folder" in result.err
    assert listing(outside) == before


# --- --exclude ----------------------------------------------------------------------------------


def test_exclude_reads_patterns_as_snapshot_does(backed_up, tmp_path):
    cli, src, sid = backed_up
    patterns = ["*.tmp", f"{src}/scans/old"]
    args = [x for p in patterns for x in ("--exclude", p)]
    target = tmp_path / "t"
    cli("restore", sid, "--target", str(target), *args)
    restored = digest_tree(str(target) + str(src))
    assert "letters/draft.tmp" not in restored and "scans/old/scan0.pdf" not in restored
    assert "scans/scan1.pdf" in restored and "letters/same.txt" in restored
    assert not os.path.lexists(str(target) + f"{src}/scans/old")
    # A snapshot taken with the same patterns restores to the same tree.
    excluded_sid = cli("snapshot", str(src), *args, "--json").json()["id"]
    again = tmp_path / "t2"
    cli("restore", excluded_sid, "--target", str(again))
    assert digest_tree(str(again) + str(src)) == restored


# --- --overwrite --------------------------------------------------------------------------------

# For each mode: the letters replaced by the backup's copy (all others left as they were).
REPLACED = {
    "always": {"same", "older", "newer", "touched", "disguised"},
    "if-changed": {"older", "newer"},
    "if-newer": {"older"},
    "never": set(),
}


@pytest.mark.parametrize("mode", sorted(REPLACED))
def test_overwrite_modes(backed_up, tmp_path, mode):
    cli, src, sid = backed_up
    target = tmp_path / "t"
    letters = prepare_target(target, src)
    before = {p.name: (p.read_bytes(), p.stat().st_ino) for p in letters.iterdir()}
    report = cli(
        "restore", sid, "--target", str(target), "--overwrite", mode,
        "--include", f"{src}/letters", "--json",
    ).json()  # fmt: skip
    for name, (content, inode) in before.items():
        path = letters / name
        backup = (src / "letters" / name).read_bytes()
        if name.removesuffix(".txt") in REPLACED[mode]:
            assert path.read_bytes() == backup, name
            assert path.stat().st_ino != inode, name
            assert path.stat().st_mtime_ns == SNAP_MTIME, name
        else:
            assert path.read_bytes() == content, name
            assert path.stat().st_ino == inode, name
    assert (letters / "missing.txt").read_bytes() == (src / "letters" / "missing.txt").read_bytes()
    assert report["overwritten"] == len(REPLACED[mode])
    assert report["created"] == 2  # missing.txt and draft.tmp
    if mode == "if-changed":
        assert report["unchanged"] == 3 and report["kept"] == 0
        # Already right in content: its time is set back to the backup's, not its bytes.
        assert (letters / "touched.txt").stat().st_mtime_ns == SNAP_MTIME
    elif mode != "always":
        assert report["kept"] == 5 - len(REPLACED[mode])
    assert not list(target.rglob(".dedupe-restore-*"))


def test_a_replaced_file_is_a_new_file_renamed_into_place(backed_up, tmp_path):
    """A second name (hard link) of the old file still shows the old content: the restore
    never wrote into the file that was there, so a kill mid-write cannot have damaged it."""
    cli, src, sid = backed_up
    target = tmp_path / "t"
    letters = prepare_target(target, src)
    os.link(letters / "older.txt", tmp_path / "older-link")
    cli("restore", sid, "--target", str(target), "--overwrite", "always")
    assert (tmp_path / "older-link").read_bytes() == b"an older version\n"
    assert (letters / "older.txt").read_bytes() == (src / "letters" / "older.txt").read_bytes()
    assert os.stat(tmp_path / "older-link").st_nlink == 1


# --- --verify -----------------------------------------------------------------------------------


def test_verify_after_skipping_identical_files(backed_up, tmp_path):
    cli, src, sid = backed_up
    target = tmp_path / "t"
    first = cli("restore", sid, "--target", str(target), "--verify", "--json").json()
    assert first["verified"] == first["files"] + first["symlinks"] == 11
    assert first["mismatched"] == []
    letters = Path(str(target) + str(src)) / "letters"
    kept = inodes(letters)
    again = cli("restore", sid, "--target", str(target), "--verify")
    assert "all 11 read back match the backup" in again.text
    assert "11 already matched the backup" in again.text
    assert inodes(letters) == kept  # nothing rewritten


def test_verify_compares_content_where_size_and_time_match(backed_up, tmp_path):
    """Without --verify, if-changed trusts a matching size and time (as restic does); with it,
    the content is compared, and a file changed behind that disguise is restored."""
    cli, src, sid = backed_up
    target = tmp_path / "t"
    letters = prepare_target(target, src)
    disguised = (letters / "disguised.txt").read_bytes()
    cli("restore", sid, "--target", str(target))
    assert (letters / "disguised.txt").read_bytes() == disguised
    report = cli("restore", sid, "--target", str(target), "--verify", "--json").json()
    assert report["overwritten"] == 1 and report["mismatched"] == []
    assert digest_tree(str(target) + str(src)) == digest_tree(str(src))


# --- the progress total -------------------------------------------------------------------------


def test_progress_total_counts_what_include_and_exclude_select(backed_up):
    cli, src, sid = backed_up
    repo = open_repo(cli.repo)
    root = manifests.resolve(repo, sid).tree
    sizes = {str(p): p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink()}

    def under(*folders: str) -> int:
        return sum(s for p, s in sizes.items() if any(p.startswith(f + "/") for f in folders))

    assert selected_bytes(repo, root, []) == sum(sizes.values())
    assert selected_bytes(repo, root, [f"{src}/scans".encode()]) == under(f"{src}/scans")
    both = [f"{src}/scans/old".encode(), f"{src}/letters".encode()]
    assert selected_bytes(repo, root, both) == under(f"{src}/scans/old", f"{src}/letters")
    one_file = f"{src}/notes.txt"
    assert selected_bytes(repo, root, [one_file.encode()]) == sizes[one_file]
    no_tmp = Excluder(["*.tmp"]).excluded
    expected = under(f"{src}/letters") - sizes[f"{src}/letters/draft.tmp"]
    assert selected_bytes(repo, root, [f"{src}/letters".encode()], no_tmp) == expected


# --- usage --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--overwrite", "sometimes"], "invalid choice"),
        (["--overwrite"], "expected one argument"),
        (["--exclude", ""], "--exclude needs a pattern"),
        (["--dry-run", "--verify"], "give one of them"),
    ],
)
def test_bad_flags_exit_2(backed_up, tmp_path, args, words):
    cli, _src, sid = backed_up
    target = tmp_path / "t"
    result = cli("restore", sid, "--target", str(target), *args, check=False)
    assert result.code == 2, result.err
    assert words in result.err and "Traceback" not in result.err
    assert not os.path.lexists(target)


def test_a_file_as_target_exits_2(backed_up, tmp_path):
    cli, _src, sid = backed_up
    (tmp_path / "afile").write_text("x")
    result = cli("restore", sid, "--target", str(tmp_path / "afile"), check=False)
    assert result.code == 2 and "not a folder" in result.err and "Traceback" not in result.err
    assert (tmp_path / "afile").read_text() == "x"


def test_help_speaks_with_an_example(backed_up):
    cli, _src, _sid = backed_up
    text = cli("restore", "--help").text
    assert "--dry-run" in text and "if-changed (the default)" in text
    assert "dedupe restore latest --target" in text


def test_latest_is_the_newest_snapshot_holding_the_include(backed_up, tmp_path):
    """The nightly pair: a folder, then a database dump. `restore latest --include` a folder
    takes the folder's snapshot, and says so; --tag narrows what latest means."""
    cli, src, sid = backed_up
    cli("snapshot", "-", "--stdin-name", "practice.sql", "--tag", "db", input=b"dump\n")
    target = tmp_path / "t"
    result = cli("restore", "latest", "--target", str(target), "--include", f"{src}/letters")
    assert sid[:8] in result.err and sid[:8] in result.text
    assert (Path(str(target) + str(src)) / "letters" / "same.txt").exists()
    refused = cli(
        "restore", "latest", "--tag", "db", "--target", str(target),
        "--include", f"{src}/letters", check=False,
    )  # fmt: skip
    assert refused.code == 2 and "Traceback" not in refused.err


def test_a_folder_where_a_file_goes_costs_that_file_only(backed_up, tmp_path):
    cli, src, sid = backed_up
    target = tmp_path / "t"
    blocker = Path(str(target) + str(src)) / "letters" / "older.txt"
    (blocker / "inside").mkdir(parents=True)
    planned = cli("restore", sid, "--target", str(target), "--dry-run", "--json").json()
    actions = {item["path"]: item["action"] for item in planned["items"]}
    assert actions[f"{src}/letters/older.txt"] == "conflict"
    result = cli("restore", sid, "--target", str(target), "--json", check=False)
    assert result.code == 1, result.err
    assert f"{src}/letters/older.txt" in result.err and "move" in result.err
    assert "Traceback" not in result.err
    report = result.json()
    assert report["files"] == 9 and report["symlinks"] == 1
    assert [f["path"] for f in report["failed"]] == [f"{src}/letters/older.txt"]
    assert (blocker / "inside").is_dir()
    expected = digest_tree(str(src))
    del expected["letters/older.txt"]
    restored = digest_tree(str(target) + str(src))
    assert {k: v for k, v in restored.items() if not k.startswith("letters/older.txt")} == expected
    # With --overwrite never the folder is simply left, and that is no error.
    kept = cli("restore", sid, "--target", str(target), "--overwrite", "never", "--json").json()
    assert kept["kept"] == 11 and kept["failed"] == []
