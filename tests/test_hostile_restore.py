"""Repositories written by an attacker who knows the password: restore must refuse, not obey.

Each test builds a hostile snapshot with the library (raw msgpack trees, bypassing the encoder's
checks), runs the real CLI `restore` into a target inside a sandbox folder, and checks: a non-zero
exit (1 or 14) with a message and no traceback, nothing written outside the target, and an end
within seconds under a 1.5 GiB address-space limit (no memory exhaustion).
"""

from __future__ import annotations

import os
import resource
import subprocess

import pytest
import zstandard

from dedupe import codec
from dedupe.errors import DamageError, TreesTooDeep
from dedupe.model.tree import DIR, FILE, Node
from dedupe.repo.pack import PackBuilder
from dedupe.repo.repository import pack_name
from dedupe.repo.treewalk import DAMAGED, ENTRY, LEAVE, MAX_DEPTH, TREE, traverse
from dedupe.repo.writer import BlobWriter
from tests.clitools import Cli, Result, initialized_cli
from tests.support import open_repo, save_attacker_snapshot

MEMORY_LIMIT = 1536 << 20
TIME_LIMIT = 60


def entry(name: bytes, kind: str, **extra: object) -> dict:
    item: dict = {"n": name, "t": kind, "m": 0o755, "mt": 10**18, "u": 0, "g": 0}
    item.update(extra)
    return item


class Attacker:
    """Writes arbitrary (validly sealed) trees and snapshots into a repository."""

    def __init__(self, repo_dir: str) -> None:
        self.repo = open_repo(repo_dir)

    def blob(self, data: bytes) -> bytes:
        writer = BlobWriter(self.repo)
        blob_id = writer.add(data)
        writer.flush()
        return blob_id

    def tree(self, entries: list[dict]) -> bytes:
        return self.blob(codec.pack({"v": 1, "e": entries}))

    def file(self, name: bytes, content: bytes, size: int | None = None) -> dict:
        ids = [self.blob(content)] if content else []
        return entry(name, "f", s=len(content) if size is None else size, c=ids)

    def raw_blob(self, blob_id: bytes, stored_plain: bytes, raw_length: int) -> None:
        """A blob whose index entry and sealed bytes say whatever the attacker wants."""
        builder = PackBuilder()
        builder.add(blob_id, self.repo.sealer.seal(stored_plain), raw_length)
        pack_id, data = builder.finish(self.repo.sealer)
        self.repo.storage.put(pack_name(pack_id), data)
        self.repo.write_index([(pack_id, builder.entries)])

    def snapshot(self, root: bytes) -> str:
        return save_attacker_snapshot(self.repo, root)


@pytest.fixture
def sandbox(tmp_path) -> tuple[Cli, Attacker, str, str]:
    """(cli, attacker, target, outside): target and outside are siblings in one folder."""
    cli = initialized_cli(tmp_path)
    box = tmp_path / "box"
    (box / "outside").mkdir(parents=True)
    (box / "outside" / "victim.txt").write_text("original")
    return cli, Attacker(cli.repo), str(box / "target"), str(box / "outside")


def limited_restore(cli: Cli, sid: str, target: str, timeout: float = TIME_LIMIT) -> Result:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    proc = subprocess.run(
        cli.command("restore", sid, "--target", target),
        env=cli.env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        preexec_fn=limit,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def snapshot_of_folder(box: str) -> dict[str, bytes | str]:
    state: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(box):
        for name in dirs + files:
            path = os.path.join(folder, name)
            state[path] = (
                os.readlink(path)
                if os.path.islink(path)
                else (open(path, "rb").read() if os.path.isfile(path) else "dir")
            )
    return state


def assert_refused(result: Result, outside: str, before: dict) -> None:
    assert result.code in (1, 14), (result.code, result.err)
    assert result.err.strip() and "Traceback" not in result.err
    assert snapshot_of_folder(outside) == before, "restore wrote outside its target"


@pytest.mark.parametrize(
    "name",
    [b"..", b".", b"../../outside/victim.txt", b"/etc/x", b"a/b", b"", b"nul\0byte"],
)
def test_bad_names(sandbox, name):
    cli, eve, target, outside = sandbox
    before = snapshot_of_folder(outside)
    root = eve.tree([eve.file(name, b"pwned")])
    assert_refused(limited_restore(cli, eve.snapshot(root), target), outside, before)
    assert not os.path.exists(os.path.join(os.path.dirname(target), "etc"))


def test_duplicate_names(sandbox):
    cli, eve, target, outside = sandbox
    before = snapshot_of_folder(outside)
    link = entry(b"d", "l", lt=outside.encode())
    sub = eve.tree([eve.file(b"victim.txt", b"pwned")])
    root = eve.tree([link, entry(b"d", "d", st=sub)])
    assert_refused(limited_restore(cli, eve.snapshot(root), target), outside, before)


def test_symlink_then_files_under_it_across_two_restores(sandbox):
    cli, eve, target, outside = sandbox
    before = snapshot_of_folder(outside)
    first = eve.snapshot(eve.tree([entry(b"d", "l", lt=outside.encode())]))
    assert limited_restore(cli, first, target).code == 0  # a symlink out is itself harmless
    assert os.readlink(os.path.join(target, "d")) == outside
    sub = eve.tree([eve.file(b"victim.txt", b"pwned"), eve.file(b"new.txt", b"pwned")])
    second = eve.snapshot(eve.tree([entry(b"d", "d", st=sub)]))
    assert_refused(limited_restore(cli, second, target), outside, before)
    # A file of the same name replaces the symlink instead of writing through it.
    third = eve.snapshot(eve.tree([eve.file(b"d", b"plain file")]))
    assert limited_restore(cli, third, target).code == 0
    assert snapshot_of_folder(outside) == before
    assert open(os.path.join(target, "d"), "rb").read() == b"plain file"


def test_symlinked_folder_inside_one_snapshot(sandbox):
    cli, eve, target, outside = sandbox
    before = snapshot_of_folder(outside)
    # "a" is a symlink to outside; "a2" a folder: names differ, so the tree decodes, and
    # nothing may follow "a" when writing.
    deep = eve.tree([eve.file(b"victim.txt", b"pwned")])
    root = eve.tree([entry(b"a", "l", lt=b"../outside"), entry(b"b", "d", st=deep)])
    result = limited_restore(cli, eve.snapshot(root), target)
    assert result.code == 0, result.err
    assert snapshot_of_folder(outside) == before
    assert open(os.path.join(target, "b", "victim.txt"), "rb").read() == b"pwned"


def test_file_claiming_a_terabyte(sandbox):
    cli, eve, target, outside = sandbox
    before = snapshot_of_folder(outside)
    root = eve.tree([eve.file(b"big", b"small content", size=2**40)])
    result = limited_restore(cli, eve.snapshot(root), target)
    assert_refused(result, outside, before)
    assert "size" in result.err
    assert not os.path.exists(os.path.join(target, "big"))


@pytest.mark.parametrize("raw_length", [100, 2**31 - 1])
def test_zstd_frame_claiming_gigabytes(sandbox, raw_length):
    cli, eve, target, outside = sandbox
    before = snapshot_of_folder(outside)
    frame = zstandard.ZstdCompressor().compress(b"tiny")
    header_2gib = b"\x28\xb5\x2f\xfd\xe0" + (2**31 - 1).to_bytes(8, "little") + b"\x01\x00\x00"
    for i, stored in enumerate((header_2gib, frame[:-2])):
        blob_id = bytes([i + 1]) * 32
        eve.raw_blob(blob_id, b"\x01" + stored, raw_length)
        root = eve.tree([entry(b"f", "f", s=raw_length, c=[blob_id])])
        result = limited_restore(cli, eve.snapshot(root), target + str(i))
        assert_refused(result, outside, before)
        assert "/f" in result.err


def test_tree_that_names_itself(sandbox):
    cli, eve, target, outside = sandbox
    before = snapshot_of_folder(outside)
    # Ids are keyed hashes of content, so a tree can only "contain itself" by an index entry
    # that lies about a blob's id; verification must catch it, and not recurse forever.
    fake_id = bytes(range(32))
    body = codec.pack({"v": 1, "e": [entry(b"loop", "d", st=fake_id)]})
    eve.raw_blob(fake_id, b"\x00" + body, len(body))
    result = limited_restore(cli, eve.snapshot(fake_id), target)
    assert_refused(result, outside, before)
    assert "does not match its id" in result.err


def test_trees_naming_each_other_exponentially(sandbox):
    cli, eve, target, outside = sandbox
    before = snapshot_of_folder(outside)
    # 2**40 paths from 40 small trees: each level names the next one twice.
    tree_id = eve.tree([eve.file(b"leaf", b"x")])
    for _level in range(40):
        tree_id = eve.tree([entry(b"a", "d", st=tree_id), entry(b"b", "d", st=tree_id)])
    # It ends in about a second; a walk of 2**40 paths would never end, so a generous limit
    # loses nothing and does not fail a busy machine.
    try:
        result = limited_restore(cli, eve.snapshot(tree_id), target, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("restore did not end within 120 s (2**40 paths were being walked)")
    assert_refused(result, outside, before)


def test_huge_mtime_and_owner(sandbox):
    cli, eve, target, outside = sandbox
    before = snapshot_of_folder(outside)
    item = eve.file(b"f", b"data")
    item["mt"] = 2**63 + 5
    result = limited_restore(cli, eve.snapshot(eve.tree([item])), target)
    assert_refused(result, outside, before)


# --- the one tree walker (dedupe.repo.treewalk.traverse) on hostile trees ------------------------


def _dir(name: bytes, subtree: bytes) -> Node:
    return Node(name, DIR, 0o755, 0, 0, 0, subtree=subtree)


def _file(name: bytes) -> Node:
    return Node(name, FILE, 0o644, 0, 0, 0, size=0)


def _loader(trees: dict[bytes, list[Node]]):
    loads: list[bytes] = []

    def load(tree_id: bytes) -> list[Node]:
        loads.append(tree_id)
        if tree_id not in trees:
            raise DamageError(f"tree {tree_id.hex()[:8]} is damaged")
        return trees[tree_id]

    return load, loads


def _tid(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_walker_chain_deeper_than_the_limit_is_refused_before_it_is_read() -> None:
    trees = {_tid(i): [_dir(b"d", _tid(i + 1))] for i in range(MAX_DEPTH + 5)}
    load, loads = _loader(trees)
    with pytest.raises(TreesTooDeep):
        list(traverse(load, [_tid(0)]))
    assert len(loads) == MAX_DEPTH + 1  # depths 0..MAX_DEPTH read, the next refused unread
    reported = list(traverse(load, [_tid(0)], entries=False, report_too_deep=True))
    assert [v.depth for v in reported if v.kind == DAMAGED] == [MAX_DEPTH + 1]


def test_walker_tree_naming_itself_ends() -> None:
    load, _ = _loader({_tid(1): [_dir(b"loop", _tid(1))]})
    with pytest.raises(TreesTooDeep):
        list(traverse(load, [_tid(1)]))
    seen: set[bytes] = set()

    def first_visit(tree_id: bytes) -> bool:
        fresh = tree_id not in seen
        seen.add(tree_id)
        return fresh

    visits = list(traverse(load, [_tid(1)], first_visit=first_visit))
    assert [v.kind for v in visits] == [TREE, ENTRY, LEAVE]


def test_walker_visits_each_shared_tree_once_with_a_visited_hook() -> None:
    trees = {_tid(0): [_file(b"leaf")]}
    for level in range(1, 41):  # 2**40 places, 41 trees
        trees[_tid(level)] = [_dir(b"a", _tid(level - 1)), _dir(b"b", _tid(level - 1))]
    load, loads = _loader(trees)
    seen: set[bytes] = set()

    def first_visit(tree_id: bytes) -> bool:
        fresh = tree_id not in seen
        seen.add(tree_id)
        return fresh

    trees_seen = [v.tree_id for v in traverse(load, [_tid(40)], first_visit=first_visit)
                  if v.kind == TREE]  # fmt: skip
    assert len(trees_seen) == len(loads) == 41


def test_walker_reports_a_damaged_folder_in_order_and_goes_on() -> None:
    trees = {
        _tid(0): [_dir(b"a", _tid(1)), _dir(b"b", _tid(9)), _file(b"c")],
        _tid(1): [_file(b"x")],
    }
    load, _ = _loader(trees)
    with pytest.raises(DamageError):
        list(traverse(load, [_tid(0)]))
    steps = [(v.kind, b"/".join(v.path)) for v in traverse(load, [_tid(0)], report_damage=True)]
    assert steps == [
        (TREE, b""),
        (ENTRY, b"a"),
        (TREE, b"a"),
        (ENTRY, b"a/x"),
        (LEAVE, b"a"),
        (ENTRY, b"b"),
        (DAMAGED, b"b"),
        (LEAVE, b"b"),
        (ENTRY, b"c"),
        (LEAVE, b""),
    ]
