"""`dedupe find GLOB` through the real CLI (CONTRACT.md): every version of matching files across
snapshots, `--json` as `{snapshot, time, path, type, size, mtime}`, filters, bad globs exit 2;
and the search library's promises: each shared tree read once (counted, not timed), hostile
trees refused as `ls` refuses them."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dedupe import codec
from dedupe.errors import DamageError, FormatError, TreesTooDeep
from dedupe.find import Finder, compile_pattern, find
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import DIR, FILE, Node
from dedupe.repo import manifests, treewalk
from dedupe.repo.writer import BlobWriter
from tests.clitools import Cli, initialized_cli
from tests.support import open_repo

KEYS = {"snapshot", "time", "path", "type", "size", "mtime"}
DAY1 = 1_780_000_000  # file mtimes, a day apart


@dataclass
class Office:
    cli: Cli
    root: str
    ids: list[str]  # the folder snapshots, oldest first (day 1..5), then the dump


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Office:
    """letters/letter.docx: v1 on days 1-2, v2 on day 3, gone on day 4, v3 on day 5;
    reports/letter.docx unchanged all five days; then a dump snapshot."""
    tmp = tmp_path_factory.mktemp("office")
    cli = initialized_cli(tmp)
    root = tmp / "office"
    letters, reports, notes = root / "letters", root / "reports", root / "notes"
    for folder in (letters, reports, notes):
        folder.mkdir(parents=True)

    def write(path: Path, text: str, day: int) -> None:
        path.write_text(text)
        os.utime(path, (DAY1 + day * 86_400, DAY1 + day * 86_400))

    def snapshot(day: int) -> str:
        when = f"2026-11-{day:02d}T02:00:00+00:00"
        return cli("--json", "snapshot", str(root), "--tag", "docs", "--time", when).json()["id"]

    write(letters / "letter.docx", "letter v1", 1)
    write(reports / "letter.docx", "the report", 1)
    write(notes / "a.txt", "note 1", 1)
    ids = [snapshot(1)]
    write(notes / "a.txt", "note 2 changed", 2)
    ids.append(snapshot(2))
    write(letters / "letter.docx", "letter v2, longer", 3)
    ids.append(snapshot(3))
    (letters / "letter.docx").unlink()
    ids.append(snapshot(4))
    write(letters / "letter.docx", "letter v3 is back", 5)
    ids.append(snapshot(5))
    dump = ("snapshot", "-", "--stdin-name", "practice.sql", "--tag", "db")
    ids.append(cli("--json", *dump, "--time", "2026-11-06T02:00:00+00:00", input=b"x").json()["id"])
    return Office(cli, str(root), ids)


def test_json_lists_every_version_with_the_contract_keys(office: Office) -> None:
    found = office.cli("--json", "find", "letter.docx").json()
    assert all(set(item) == KEYS for item in found)
    letter = f"{office.root}/letters/letter.docx"
    report = f"{office.root}/reports/letter.docx"
    ids = office.ids
    versions = {(item["snapshot"], item["path"]): item for item in found}
    assert set(versions) == {(ids[d], letter) for d in (0, 1, 2, 4)} | {
        (ids[d], report) for d in range(5)
    }
    sizes = [versions[ids[d], letter]["size"] for d in (0, 1, 2, 4)]
    assert sizes == [len("letter v1"), len("letter v1"), len("letter v2, longer"), 17]
    first = versions[ids[0], letter]
    assert first["type"] == "file"
    assert datetime.fromisoformat(first["time"]) == datetime(2026, 11, 1, 2, tzinfo=UTC)
    assert datetime.fromisoformat(first["mtime"]).timestamp() == DAY1 + 86_400
    assert [item["snapshot"] for item in found] == sorted(
        (item["snapshot"] for item in found), key=ids.index
    )  # oldest snapshot first


def test_human_output_groups_versions_per_file(office: Office) -> None:
    text = office.cli("find", "letter.docx").text
    newest = office.ids[4][:8]
    assert f"{office.root}/letters/letter.docx: 3 versions in 4 snapshots, newest in {newest}" in (
        text
    )
    assert f"{office.root}/reports/letter.docx: 1 version in 5 snapshots" in text
    assert "in 2 snapshots, 2026-11-01 " in text  # v1, on days 1 and 2
    assert "2 paths match 'letter.docx' in 5 of 6 snapshots" in text
    assert "dedupe restore SNAP --target DIR --include PATH" in text


def test_path_globs_and_filters(office: Office) -> None:
    cli = office.cli

    def paths(*args: str) -> set[str]:
        return {item["path"] for item in cli("--json", "find", *args).json()}

    letter = f"{office.root}/letters/letter.docx"
    report = f"{office.root}/reports/letter.docx"
    assert paths(f"{office.root}/letters/*.docx") == {letter}
    assert paths("**/reports/*.docx") == {report}
    assert paths(f"{office.root}/**/letter.docx") == {letter, report}
    assert paths(f"{office.root}/*.docx") == set()  # * never crosses a /
    assert paths("letter.DOCX") == set()  # names match case-sensitively
    assert paths("[lr]etter.doc?") == {letter, report}
    assert paths("practice.sql") == {"/practice.sql"}
    assert paths("letter.docx", "--tag", "db") == set()
    assert paths("practice.sql", "--path", office.root) == set()
    assert paths("letters", "--tag", "docs") == {f"{office.root}/letters"}  # folders too
    assert "nothing matches 'x.docx' in 6 snapshots" in cli("find", "x.docx").text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("",), "find needs a file name or a pattern"),
        (("letters/letter.docx",), "starts at the root with '/'"),
        (("[abc",), "never closed"),
        (("/srv/../letter.docx",), "no '.' or '..'"),
        (("letter\\",), "escapes nothing"),
        (("[z-a]",), "not a valid glob"),
        (("letter.docx", "--tag", ""), "has an empty tag"),
        (("letter.docx", "--host", "nowhere"), None),  # a filter that matches nothing: exit 0
    ],
)
def test_a_bad_glob_or_filter_is_exit_2(office: Office, args, words) -> None:
    result = office.cli("find", *args, check=False)
    assert "Traceback" not in result.err
    if words is None:
        assert result.code == 0 and "nothing matches" in result.text
    else:
        assert result.code == 2 and words in result.err


# --- the search itself: each tree once, the same answers as a plain walk ------------------------


def test_each_shared_tree_is_read_once_across_snapshots(office: Office) -> None:
    repo = open_repo(office.cli.repo)
    snaps = manifests.load_all(repo)
    loads: list[bytes] = []

    def counting_load(tree_id: bytes) -> list[Node]:
        loads.append(tree_id)
        return treewalk.read_tree(repo, tree_id)

    distinct: set[bytes] = set()
    per_snapshot = 0
    for snap in snaps:
        visits = treewalk.traverse(counting_load, [snap.tree], entries=False)
        seen = {visit.tree_id for visit in visits if visit.kind == treewalk.TREE}
        per_snapshot += len(seen)
        distinct |= seen
    loads.clear()
    # Every snapshot twice over: the second pass must read nothing at all.
    result = find(repo, snaps + snaps, compile_pattern("letter.docx"), load=counting_load)
    assert sorted(loads) == sorted(distinct)  # each tree exactly once
    assert result.trees_read == len(distinct) < per_snapshot  # and sharing saved reads
    # The same answers as walking every snapshot's whole tree.
    expected = [
        (snap.id, path)
        for snap in snaps + snaps
        for path, _node in sorted(treewalk.walk(repo, snap.tree))
        if fnmatch.fnmatchcase(os.path.basename(path).decode(), "letter.docx")
    ]
    assert [(m.snapshot.id, m.path) for m in result.matches] == expected


# --- hostile trees (the loader stands in for a repository an attacker wrote) ---------------------


def _tid(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _dir(name: bytes, subtree: bytes) -> Node:
    return Node(name, DIR, 0o755, 0, subtree=subtree)


def _file(name: bytes) -> Node:
    return Node(name, FILE, 0o644, 0)


def _finder(trees: dict[bytes, list[Node]], glob: str = "leaf", limit: int = 10_000):
    loads: list[bytes] = []

    def load(tree_id: bytes) -> list[Node]:
        loads.append(tree_id)
        if tree_id not in trees:
            raise DamageError(f"tree {tree_id.hex()[:8]} is damaged")
        return trees[tree_id]

    return Finder(compile_pattern(glob), load, limit), loads


def test_a_chain_deeper_than_the_limit_is_refused() -> None:
    depth = treewalk.MAX_DEPTH
    trees = {_tid(i): [_dir(b"d", _tid(i + 1))] for i in range(depth + 5)}
    trees[_tid(depth + 5)] = [_file(b"leaf")]
    finder, loads = _finder(trees)
    with pytest.raises(TreesTooDeep):
        list(finder.matches(_tid(0)))
    assert len(loads) == depth + 1  # refused before the next level is read


def test_a_shared_tree_reused_deeper_is_still_refused() -> None:
    """A tree searched as a shallow root must not carry a deep placement past the limit."""
    half = treewalk.MAX_DEPTH // 2 + 10
    trees = {_tid(i): [_dir(b"d", _tid(i + 1))] for i in range(half)}
    trees[_tid(half)] = [_file(b"leaf")]
    deep_root = 10_000  # a second snapshot places tree 0 `half` levels down
    trees.update({_tid(deep_root + i): [_dir(b"e", _tid(deep_root + i + 1))] for i in range(half)})
    trees[_tid(deep_root + half)] = [_dir(b"shared", _tid(0))]
    finder, _loads = _finder(trees)
    assert [p for p, _n in finder.matches(_tid(0))] == [b"/d" * half + b"/leaf"]
    with pytest.raises(TreesTooDeep):
        list(finder.matches(_tid(deep_root)))


def test_trees_naming_each_other_exponentially_are_refused_after_one_read_each() -> None:
    trees = {_tid(0): [_file(b"leaf")]}
    for level in range(1, 41):  # 2**40 paths from 41 trees
        trees[_tid(level)] = [_dir(b"a", _tid(level - 1)), _dir(b"b", _tid(level - 1))]
    finder, loads = _finder(trees)
    with pytest.raises(FormatError, match="more than 10000 entries"):
        list(finder.matches(_tid(40)))
    assert sorted(loads) == sorted(set(loads))  # no tree read twice


def test_a_hostile_snapshot_is_named_and_the_others_still_searched(tmp_path: Path) -> None:
    cli = initialized_cli(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "leaf").write_text("honest")
    cli("snapshot", str(tmp_path / "docs"), "--time", "2026-11-01T02:00:00+00:00")
    repo = open_repo(cli.repo)
    writer = BlobWriter(repo)
    leaf = {"n": b"leaf", "t": "f", "m": 0o644, "mt": 0, "u": 0, "g": 0, "s": 0, "c": []}
    tree_id = writer.add(codec.pack({"v": 1, "e": [leaf]}))
    for _level in range(40):  # 2**40 paths: more than MAX_ENTRIES
        sub = {"t": "d", "m": 0o755, "mt": 0, "u": 0, "g": 0, "st": tree_id}
        tree_id = writer.add(codec.pack({"v": 1, "e": [sub | {"n": b"a"}, sub | {"n": b"b"}]}))
    writer.flush()
    hostile = Snapshot(
        manifests.new_snapshot_id(),
        datetime(2026, 11, 2, tzinfo=UTC),
        "attacker",
        "eve",
        (b"/x",),
        (),
        tree_id,
    )
    manifests.save(repo, hostile)
    result = cli("find", "leaf", check=False, timeout=120)
    assert result.code == 14 and "Traceback" not in result.err
    assert f"snapshot {hostile.short_id()} could not be searched" in result.err
    assert "hostile or damaged" in result.err
    assert f"{tmp_path}/docs/leaf: 1 version in 1 snapshot" in result.text
