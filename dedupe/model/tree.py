"""Tree blobs: one folder's entries, sorted by name, encoded with the fixed codec.

Two formats (docs/FORMAT.md, docs/FORMAT-trees.md): format 1, a map per entry, which every
repository may hold and which stays readable; and format 2, columns compressed with a built-in
dictionary (`treecols.py`), which `encode_tree` writes. A repository may mix them freely: a tree's
id is its own bytes, and an unchanged folder keeps the tree it had.

Decoding validates every entry: names are single path components (no '/', NUL, '.', '..'),
unique within the folder, types and fields are what they claim to be. A hostile tree therefore
cannot name a path outside its folder; the restorer relies on that and checks again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

from dedupe import codec
from dedupe.errors import FormatError, UnsupportedVersion
from dedupe.model import treecols

FILE = "f"
DIR = "d"
SYMLINK = "l"
TYPE_NAMES = {FILE: "file", DIR: "dir", SYMLINK: "symlink"}


@dataclass(frozen=True, slots=True)
class Node:
    """One entry of a folder."""

    name: bytes
    type: str
    mode: int
    mtime_ns: int
    uid: int = 0
    gid: int = 0
    user: str | None = None
    group: str | None = None
    size: int = 0
    content: tuple[bytes, ...] = field(default=())
    subtree: bytes | None = None
    target: bytes | None = None

    def to_map(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "n": self.name,
            "t": self.type,
            "m": self.mode,
            "mt": self.mtime_ns,
            "u": self.uid,
            "g": self.gid,
        }
        if self.user is not None:
            item["un"] = self.user
        if self.group is not None:
            item["gn"] = self.group
        if self.type == FILE:
            item["s"] = self.size
            item["c"] = list(self.content)
        elif self.type == DIR:
            item["st"] = self.subtree
        else:
            item["lt"] = self.target
        return item


def valid_name(name: bytes) -> bool:
    """A single, harmless path component."""
    return bool(name) and name not in (b".", b"..") and b"/" not in name and b"\0" not in name


def encode_tree(nodes: list[Node]) -> bytes:
    """The tree of `nodes` in the current format (2)."""
    return treecols.encode(sorted(nodes, key=lambda n: n.name))


def encode_tree_v1(nodes: list[Node]) -> bytes:
    """The tree of `nodes` in format 1, as dedupe wrote it before format 2 (test fixtures)."""
    ordered = sorted(nodes, key=lambda n: n.name)
    return codec.pack({"v": 1, "e": [n.to_map() for n in ordered]})


def _int(value: object, low: int, high: int) -> TypeGuard[int]:
    return type(value) is int and low <= value < high  # type() excludes bool on purpose


def _node_from_map(item: object, what: str) -> Node:
    """One validated format 1 entry."""
    if type(item) is not dict:
        raise FormatError(f"{what}: malformed entry")
    get = item.get
    return _node(
        get("n"), get("t"), get("m"), get("mt"), get("u"), get("g"), get("un"), get("gn"),
        get("s"), get("c"), get("st"), get("lt"), what=what,
    )  # fmt: skip


def _node(
    name: object,
    kind: object,
    mode: object,
    mtime_ns: object,
    uid: object,
    gid: object,
    user: object,
    group: object,
    size: object,
    content: object,
    subtree: object,
    target: object,
    *,
    what: str,
) -> Node:
    """One validated entry of either format. Written with direct checks, not `codec.field`:
    restores and gc decode every entry of every tree, so this is a hot path."""
    # Restore hands these to utime/chown: out of the kernel's ranges they would raise there.
    if not (
        type(name) is bytes
        and type(kind) is str
        and _int(mode, 0, 2**32)
        and _int(mtime_ns, -(2**63), 2**63)
        and _int(uid, 0, 2**32)
        and _int(gid, 0, 2**32)
        and (user is None or type(user) is str)
        and (group is None or type(group) is str)
    ):
        raise FormatError(f"{what}: malformed entry, or time or owner out of range")
    if not valid_name(name):
        raise FormatError(f"{what}: invalid file name {name!r}")
    mode &= 0o7777
    if kind == FILE:
        if not _int(size, 0, 2**63) or type(content) is not list:
            raise FormatError(f"{what}: malformed file entry or size out of range")
        for blob in content:
            if type(blob) is not bytes or len(blob) != 32:
                raise FormatError(f"{what}: invalid id")
        return Node(name, kind, mode, mtime_ns, uid, gid, user, group, size, tuple(content))
    if kind == DIR:
        if type(subtree) is not bytes or len(subtree) != 32:
            raise FormatError(f"{what}: invalid id")
        return Node(name, kind, mode, mtime_ns, uid, gid, user, group, subtree=subtree)
    if kind == SYMLINK:
        if type(target) is not bytes or not target or b"\0" in target:
            raise FormatError(f"{what}: invalid symlink target")
        return Node(name, kind, mode, mtime_ns, uid, gid, user, group, target=target)
    raise FormatError(f"{what}: unknown entry type {kind!r}")


def decode_tree(data: bytes, what: str = "tree") -> list[Node]:
    """The validated entries of a tree of either format; FormatError if it is malformed."""
    obj = codec.unpack(data, what)
    version = codec.field(obj, "v", int, what)
    if version == treecols.VERSION:
        cols = treecols.inflate(obj, what)
        nodes = [_node(*fields, what=what) for fields in treecols.rows(cols, what)]
    elif version == 1:
        nodes = [_node_from_map(item, what) for item in codec.field(obj, "e", list, what)]
    else:
        raise UnsupportedVersion(
            f"{what} has tree format {version}; this dedupe reads tree formats 1 and 2"
        )
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise FormatError(f"{what}: duplicate names")
    return nodes
