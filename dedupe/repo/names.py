"""Where things live in a repository: the names of pack objects and of the gc marker.

One place spells the object layout of docs/FORMAT.md that the repository, gc, check and repair
all read and write, so a name built by one is always the name another parses. Pure: no I/O.
"""

from __future__ import annotations

# Present while a gc has deleted (or may be deleting) garbage packs that older index files still
# name; see `dedupe.repo.indexload` and the "gc" section of docs/FORMAT.md. Zero bytes, so it can
# be written on a full disk.
GC_PENDING = "gc-pending"


def pack_name(pack_id: bytes) -> str:
    hexid = pack_id.hex()
    return f"data/{hexid[:2]}/{hexid}"


def pack_id_from_name(name: str) -> bytes | None:
    """The pack id of a `data/xx/<64 hex>` name, or None for anything else."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "data" or len(parts[2]) != 64 or parts[1] != parts[2][:2]:
        return None
    try:
        return bytes.fromhex(parts[2])
    except ValueError:
        return None
