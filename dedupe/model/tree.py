"""Tree blobs: one folder's entries, sorted by name, encoded with the fixed codec.

Decoding validates every entry: names are single path components (no '/', NUL, '.', '..'),
unique within the folder, types and fields are what they claim to be. A hostile tree therefore
cannot name a path outside its folder; the restorer relies on that and checks again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dedupe import codec
from dedupe.errors import FormatError

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

    def to_map(self) -> dict:
        item: dict = {
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
    ordered = sorted(nodes, key=lambda n: n.name)
    return codec.pack({"v": codec.FORMAT_VERSION, "e": [n.to_map() for n in ordered]})


def _node_from_map(item: object, what: str) -> Node:
    if not isinstance(item, dict):
        raise FormatError(f"{what}: malformed entry")
    name = codec.field(item, "n", bytes, what)
    if not valid_name(name):
        raise FormatError(f"{what}: invalid file name {name!r}")
    kind = codec.field(item, "t", str, what)
    mtime_ns = codec.field(item, "mt", int, what)
    uid, gid = codec.field(item, "u", int, what), codec.field(item, "g", int, what)
    # Restore hands these to utime/chown: out of the kernel's ranges they would raise there.
    if not (-(2**63) <= mtime_ns < 2**63 and 0 <= uid < 2**32 and 0 <= gid < 2**32):
        raise FormatError(f"{what}: time or owner out of range")
    common = dict(
        name=name,
        type=kind,
        mode=codec.field(item, "m", int, what) & 0o7777,
        mtime_ns=mtime_ns,
        uid=uid,
        gid=gid,
        user=codec.opt_field(item, "un", str, what),
        group=codec.opt_field(item, "gn", str, what),
    )
    if kind == FILE:
        size = codec.field(item, "s", int, what)
        content = tuple(codec.blob_id(c, what) for c in codec.field(item, "c", list, what))
        if not 0 <= size < 2**63:
            raise FormatError(f"{what}: size out of range")
        return Node(**common, size=size, content=content)
    if kind == DIR:
        return Node(**common, subtree=codec.blob_id(codec.field(item, "st", bytes, what), what))
    if kind == SYMLINK:
        target = codec.field(item, "lt", bytes, what)
        if not target or b"\0" in target:
            raise FormatError(f"{what}: invalid symlink target")
        return Node(**common, target=target)
    raise FormatError(f"{what}: unknown entry type {kind!r}")


def decode_tree(data: bytes, what: str = "tree") -> list[Node]:
    obj = codec.check_version(codec.unpack(data, what), what)
    nodes = [_node_from_map(item, what) for item in codec.field(obj, "e", list, what)]
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise FormatError(f"{what}: duplicate names")
    return nodes
