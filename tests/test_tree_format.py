"""Tree formats 1 and 2 (docs/FORMAT-trees.md): both decode to the same entries, format 2 is
what snapshots write, hostile format 2 trees are FormatError, and a repository whose trees were
written in format 1 (by the old encoding path, through the real CLI) stays readable by restore,
ls, find, diff, check and copy, also once newer snapshots mix both formats."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import msgpack
import pytest
import zstandard

from dedupe import codec
from dedupe.errors import FormatError, UnsupportedVersion
from dedupe.model import treecols
from dedupe.model.tree import DIR, FILE, SYMLINK, Node, decode_tree, encode_tree, encode_tree_v1
from dedupe.repo import manifests
from tests.clitools import Cli
from tests.support import PASSWORD, assert_same_tree, make_tree, open_repo

ID_A, ID_B, ID_C = bytes(range(32)), bytes(range(1, 33)), bytes(range(2, 34))

NODES = [
    Node(b"a.txt", FILE, 0o644, 1_700_000_000_123_456_789, 1000, 1000, "anna", "staff", 5, (ID_A,)),
    Node(b"big.sql", FILE, 0o600, 1_700_000_001_000_000_000, 0, 0, "root", "root", 9, (ID_B, ID_C)),
    Node(b"empty", FILE, 0o640, -5, 0, 0, None, None, 0, ()),
    Node(
        b"folder", DIR, 0o755, 1_600_000_000_000_000_000, 1000, 1000, "anna", "staff", subtree=ID_C
    ),
    Node(b"link", SYMLINK, 0o777, 10**18, 0, 0, "root", None, target=b"../x/y"),
    Node("r\xe9sum\xe9".encode("latin-1"), FILE, 0o4755, 0, 2**32 - 1, 7, None, "g", 1, (ID_A,)),
]


def test_both_formats_decode_to_the_same_entries():
    shuffled = NODES[::-1]
    assert decode_tree(encode_tree(shuffled)) == NODES
    assert decode_tree(encode_tree_v1(shuffled)) == NODES
    assert decode_tree(encode_tree([])) == [] and decode_tree(encode_tree_v1([])) == []
    one = [Node(b"only", FILE, 0o644, 1, size=3, content=(ID_A,))]
    assert decode_tree(encode_tree(one)) == one


def test_format_2_is_what_is_written_deterministically_and_smaller():
    data = encode_tree(NODES)
    assert codec.unpack(data)["v"] == 2
    assert encode_tree(list(NODES)) == data  # an unchanged folder keeps its id
    assert len(data) < len(encode_tree_v1(NODES))


def _envelope(cols: dict) -> bytes:
    comp = zstandard.ZstdCompressor(dict_data=treecols._dict, write_dict_id=False)
    return codec.pack({"v": 2, "z": comp.compress(codec.pack(cols))})


def _cols(**change) -> dict:
    cols = treecols.columns(sorted(NODES, key=lambda n: n.name))
    cols.update(change)
    return {k: v for k, v in cols.items() if v is not None}


@pytest.mark.parametrize(
    "change",
    [
        {"t": "fffdlx"},  # unknown type
        {"t": "ffd"},  # fewer types than names
        {"n": b"a.txt\0big.sql\0empty\0fol/der\0link\0r"},  # a '/' in a name
        {"n": b"a.txt\0a.txt\0empty\0folder\0link\0r"},  # duplicate names
        {"n": b"a.txt\0\0empty\0folder\0link\0r"},  # an empty name
        {"m": [0o644]},  # a short column
        {"mt": [2**63 - 1] * 6},  # mtimes that add up out of range
        {"o": [[0, 0, None, None, 1]]},  # a malformed owner
        {"oi": [0, 0, 0, 0, 0, 9]},  # an owner that does not exist
        {"cn": [1, 2, 0, 5]},  # more ids than stored
        {"c": b"\0" * 31},  # ids cut short
        {"st": b""},  # a folder without its tree
        {"lt": None},  # a symlink without its target
        {"s": [1, 2, -3, 4]},  # a negative size
    ],
)
def test_hostile_format_2_trees_are_format_errors(change):
    with pytest.raises(FormatError):
        decode_tree(_envelope(_cols(**change)))


def test_damaged_frames_and_unknown_versions():
    good = codec.unpack(encode_tree(NODES))
    for frame in (b"", b"not zstd at all", good["z"][:-3], b"\x00" + good["z"]):
        with pytest.raises(FormatError):
            decode_tree(codec.pack({"v": 2, "z": frame}))
    with pytest.raises(FormatError):
        decode_tree(codec.pack({"v": 2}))
    # A frame claiming far more than it could hold is refused before anything is allocated.
    bomb = zstandard.ZstdCompressor(dict_data=treecols._dict).compress(b"\0" * 5_000_000)
    with pytest.raises(FormatError, match="implausible size"):
        decode_tree(codec.pack({"v": 2, "z": bomb}))
    with pytest.raises(UnsupportedVersion, match="tree format 3"):
        decode_tree(codec.pack({"v": 3, "e": []}))


# --- a repository written in format 1 -----------------------------------------------------------

OLD_ENTRY = """\
import sys

import tests.cli_entry  # cheap Argon2id for new keys
from dedupe.backup import archiver
from dedupe.model.tree import encode_tree_v1

archiver.encode_tree = encode_tree_v1  # the encoding path dedupe had before tree format 2
from dedupe.cli.main import main

sys.exit(main())
"""


class OldCli(Cli):
    """The CLI as it wrote trees before format 2."""

    def __init__(self, repo: str, cache: str, entry: Path) -> None:
        super().__init__(repo, cache)
        entry.write_text(OLD_ENTRY)
        self.entry = str(entry)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, self.entry, *args]


def _tree_versions(repo_path: str) -> dict[str, set[int]]:
    """snapshot id -> the tree formats its trees use."""
    from dedupe.repo.treewalk import TREE, read_tree, traverse

    repo = open_repo(repo_path)
    out: dict[str, set[int]] = {}
    for snap in manifests.load_all(repo):
        seen: set[int] = set()
        for visit in traverse(lambda t: read_tree(repo, t), [snap.tree]):
            if visit.kind == TREE:
                seen.add(msgpack.unpackb(repo.read_blob(visit.tree_id))["v"])
        out[snap.id] = seen
    return out


@pytest.mark.slow
def test_a_format_1_repository_stays_readable_and_mixes_with_format_2(tmp_path):
    data = str(tmp_path / "data")
    make_tree(data)
    old = OldCli(str(tmp_path / "repo"), str(tmp_path / "cache"), tmp_path / "old_entry.py")
    old("init")
    first = old("snapshot", data, "--json").json()["id"]
    assert _tree_versions(old.repo) == {first: {1}}

    cli = Cli(old.repo, str(tmp_path / "cache"))
    cli("restore", first, "--target", str(tmp_path / "r1"))
    assert_same_tree(data, str(tmp_path / "r1") + data)
    listed = {e["path"] for e in cli("ls", first, "--json").json()}
    assert data + "/deep/er/est/random.bin" in listed
    found = cli("find", "random.bin", "--json").json()
    assert [f["path"] for f in found] == [data + "/deep/er/est/random.bin"]

    # The new dedupe writes format 2 for what changed; unchanged folders keep their format 1
    # tree (the files cache names it), so one snapshot holds both formats.
    with open(os.path.join(data, "deep", "er", "new.txt"), "wb") as f:
        f.write(b"written after the upgrade\n")
    second = cli("snapshot", data, "--json").json()["id"]
    versions = _tree_versions(cli.repo)
    assert versions[first] == {1} and versions[second] == {1, 2}
    changes = cli("diff", first, second, "--json").json()
    assert changes["added"] == [data + "/deep/er/new.txt"] and changes["removed"] == []
    cli("restore", second, "--target", str(tmp_path / "r2"))
    assert_same_tree(data, str(tmp_path / "r2") + data)
    assert cli("check", "--read-data", "--json").json()["ok"] is True

    # Copy: same ids moves both formats as they are; another key re-encodes (format 2).
    env = {"DEDUPE_FROM_PASSWORD": PASSWORD, "DEDUPE_TO_PASSWORD": PASSWORD}
    for name, init_args in (("same", ["--copy-chunker-params-from", cli.repo]), ("other", [])):
        dest = Cli(str(tmp_path / name), str(tmp_path / "cache"))
        dest("init", *init_args, env=env)
        cli("copy", "--to", dest.repo, env=env)
        dest("restore", second, "--target", str(tmp_path / f"r-{name}"))
        assert_same_tree(data, str(tmp_path / f"r-{name}") + data)
        assert dest("check", "--read-data", "--json").json()["ok"] is True
    assert _tree_versions(str(tmp_path / "same"))[first] == {1}
    assert _tree_versions(str(tmp_path / "other"))[first] == {2}


def test_the_dictionary_is_the_frozen_one():
    """Trees already stored need exactly these bytes: regenerating it breaks every repository."""
    from dedupe.model.treedict import TREE_DICT_V2

    digest = hashlib.sha256(TREE_DICT_V2).hexdigest()
    assert digest == "78f7ca0696cfe453bb2a33eb8d4f5491e853364e689cc2307bd29e88959ce611"


def test_mutated_columns_decode_or_are_format_errors():
    """Seeded mutations of the columns inside the frame (where a byte fuzzer rarely gets past
    zstd): every result is a FormatError or valid entries, never another exception."""
    import random

    rng = random.Random(17)
    values = [None, True, -1, 0, 1, 2**63, "", "fdl", b"", b"\0", b"x" * 64, [], [None], [-1],
              [0, 0, 0, 0, 0, 0], [[0, 0, None, None]], {"a": 1}, 1.5]  # fmt: skip
    base = treecols.columns(sorted(NODES, key=lambda n: n.name))
    decoded = 0
    for _ in range(400):
        cols = dict(base)
        for key in rng.sample(sorted(base) + ["oi", "lt", "zz"], rng.randint(1, 3)):
            cols[key] = rng.choice(values)
        try:
            nodes = decode_tree(_envelope(cols))
        except FormatError:
            continue
        decoded += 1
        assert all(n.name and b"/" not in n.name and b"\0" not in n.name for n in nodes)
    assert decoded < 400  # most mutations are refused
