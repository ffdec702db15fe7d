"""Tree format 2: one folder's entries as columns, compressed with a built-in zstd dictionary.

Specified in docs/FORMAT-trees.md. Why: a snapshot stores one tree blob per changed folder, and
most folders of a source tree hold a handful of entries. Format 1 (a map per entry) compresses
alone, without context, so its repeated keys, owner names and common file names cost bytes in
every small tree. Columns put like with like (all names, all modes, all ids), owners are a table,
mtimes are deltas, and a dictionary shipped with dedupe (`treedict.py`, frozen: changing it is a
new format version) gives even a three-entry tree the context a large one has.

Guarantees: `encode` is deterministic for a given zstandard library (an unchanged folder yields
the same bytes, so the same id); `decode` validates every column and entry as format 1 does (see
`tree.py`), bounds the decompressed size before allocating it, and raises only FormatError.
"""

from __future__ import annotations

import threading
from typing import Any

import zstandard

from dedupe import codec
from dedupe.errors import FormatError
from dedupe.model.treedict import TREE_DICT_V2

VERSION = 2
LEVEL = 3
ID = 32
MAX_RATIO = 1024
"""A frame may claim at most this many times its own size (real trees stay below ~30x)."""
MAX_RAW = 1 << 30

_dict = zstandard.ZstdCompressionDict(TREE_DICT_V2, dict_type=zstandard.DICT_TYPE_FULLDICT)
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    comp: zstandard.ZstdCompressor | None = getattr(_local, "comp", None)
    if comp is None:
        comp = _local.comp = zstandard.ZstdCompressor(
            level=LEVEL, dict_data=_dict, write_content_size=True, write_dict_id=False
        )
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "dec", None)
    if dec is None:
        dec = _local.dec = zstandard.ZstdDecompressor(dict_data=_dict)
    return dec


def columns(nodes: list[Any]) -> dict[str, Any]:
    """The column map of `nodes` (already sorted by name); see docs/FORMAT-trees.md."""
    owners: dict[tuple[int, int, str | None, str | None], int] = {}
    owner_of: list[int] = []
    mtimes: list[int] = []
    prev = 0
    sizes: list[int] = []
    counts: list[int] = []
    content: list[bytes] = []
    subtrees: list[bytes] = []
    targets: list[bytes] = []
    for n in nodes:
        owner_of.append(owners.setdefault((n.uid, n.gid, n.user, n.group), len(owners)))
        mtimes.append(n.mtime_ns - prev)
        prev = n.mtime_ns
        if n.type == "f":
            sizes.append(n.size)
            counts.append(len(n.content))
            content.extend(n.content)
        elif n.type == "d":
            subtrees.append(n.subtree)
        else:
            targets.append(n.target)
    cols: dict[str, Any] = {
        "t": "".join(n.type for n in nodes),
        "n": b"\0".join(n.name for n in nodes),
        "m": [n.mode for n in nodes],
        "o": [list(owner) for owner in owners],
    }
    if len(owners) > 1:
        cols["oi"] = owner_of
    cols["mt"] = mtimes
    cols["s"] = sizes
    cols["cn"] = counts
    if targets:
        cols["lt"] = targets
    cols["st"] = b"".join(subtrees)
    cols["c"] = b"".join(content)
    return cols


def encode(nodes: list[Any]) -> bytes:
    """Format 2 bytes of `nodes` (sorted by name by the caller)."""
    inner = codec.pack(columns(nodes))
    return codec.pack({"v": VERSION, "z": _compressor().compress(inner)})


def inflate(obj: dict[str, Any], what: str) -> dict[str, Any]:
    """The column map inside a decoded format 2 envelope, size-checked before decompression."""
    frame = obj.get("z")
    if type(frame) is not bytes:
        raise FormatError(f"{what}: malformed tree")
    try:
        size = zstandard.frame_content_size(frame)
    except zstandard.ZstdError:
        raise FormatError(f"{what}: damaged tree (not a zstd frame)") from None
    if size < 0 or size > min(MAX_RAW, MAX_RATIO * len(frame) + 4096):
        raise FormatError(f"{what}: damaged tree (implausible size)")
    try:
        inner = _decompressor().decompress(frame)
    except zstandard.ZstdError:
        raise FormatError(f"{what}: damaged tree (does not decompress)") from None
    if len(inner) != size:
        raise FormatError(f"{what}: damaged tree (wrong size)")
    cols = codec.unpack(inner, what)
    if type(cols) is not dict:
        raise FormatError(f"{what}: malformed tree")
    return cols


def _list(cols: dict[str, Any], key: str, length: int, what: str) -> list[Any]:
    value = cols.get(key)
    if type(value) is not list or len(value) != length:
        raise FormatError(f"{what}: malformed tree (column {key!r})")
    return value


def rows(cols: dict[str, Any], what: str) -> list[tuple[Any, ...]]:
    """The entries of a column map as field tuples (name, type, mode, mtime, uid, gid, user,
    group, size, ids, subtree, target), validated by the caller as format 1 entries are."""
    kinds, names = cols.get("t"), cols.get("n")
    if type(kinds) is not str or type(names) is not bytes:
        raise FormatError(f"{what}: malformed tree")
    count = len(kinds)
    split = names.split(b"\0") if count else []
    if len(split) != count:
        raise FormatError(f"{what}: malformed tree (names)")
    modes = _list(cols, "m", count, what)
    deltas = _list(cols, "mt", count, what)
    owners = cols.get("o")
    if type(owners) is not list or len(owners) > max(count, 1):
        raise FormatError(f"{what}: malformed tree (owners)")
    for owner in owners:
        if type(owner) is not list or len(owner) != 4:
            raise FormatError(f"{what}: malformed tree (owners)")
    owner_of = _list(cols, "oi", count, what) if "oi" in cols else [0] * count
    files, dirs = kinds.count("f"), kinds.count("d")
    sizes = _list(cols, "s", files, what)
    counts = _list(cols, "cn", files, what)
    links = _list(cols, "lt", count - files - dirs, what) if "lt" in cols else []
    subtrees, content = cols.get("st"), cols.get("c")
    if type(subtrees) is not bytes or type(content) is not bytes or len(subtrees) != ID * dirs:
        raise FormatError(f"{what}: malformed tree (ids)")
    if any(type(c) is not int or not 0 <= c <= len(content) // ID for c in counts):
        raise FormatError(f"{what}: malformed tree (ids)")
    if sum(counts) * ID != len(content):
        raise FormatError(f"{what}: malformed tree (ids)")
    out: list[tuple[Any, ...]] = []
    append = out.append
    mtime = 0
    f = d = link = chunk = 0
    n_owners = len(owners)
    for name, kind, mode, delta, which in zip(split, kinds, modes, deltas, owner_of, strict=True):
        if type(which) is not int or not 0 <= which < n_owners or type(delta) is not int:
            raise FormatError(f"{what}: malformed entry")
        mtime += delta
        uid, gid, user, group = owners[which]
        if kind == "f":
            n = counts[f]
            end = chunk + n * ID
            if n == 1:
                ids = [content[chunk:end]]
            else:
                ids = [content[k : k + ID] for k in range(chunk, end, ID)]
            append((name, kind, mode, mtime, uid, gid, user, group, sizes[f], ids, None, None))
            chunk = end
            f += 1
        elif kind == "d":
            subtree = subtrees[d * ID : (d + 1) * ID]
            append((name, kind, mode, mtime, uid, gid, user, group, None, None, subtree, None))
            d += 1
        else:
            if kind == "l" and link >= len(links):
                raise FormatError(f"{what}: malformed tree (links)")
            target = links[link] if kind == "l" else None
            append((name, kind, mode, mtime, uid, gid, user, group, None, None, None, target))
            link += 1
    return out
