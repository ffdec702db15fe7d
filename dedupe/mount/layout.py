"""The mount's top level: which names the snapshots, tags and sources get (pure, no I/O).

```
snapshots/<time>_<short id>/...     every snapshot, a folder holding its files
latest -> snapshots/<newest>        the newest snapshot
tags/<tag>/<time>_<short id>        -> ../../snapshots/<same name>, and `latest` per tag
sources/<source>/<time>_<short id>  -> ../../snapshots/<same name>, and `latest` per source
```
Guarantees: every name is a single harmless path component (no '/', NUL, '.' or '..'); names
that would collide get a suffix (`~2`, `~3`, ... in snapshot order), so no snapshot is hidden by
another; `latest` always points at the newest snapshot of its group (time, then id, as
`dedupe snapshots` orders them). A source is a snapshot's group as retention sees it: its source
paths (the stream name for a dump), with the host added when the repository holds several.
Times are shown in the local time zone, as `dedupe snapshots` prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dedupe.model.snapshot import Snapshot

SNAPSHOTS = "snapshots"
TAGS = "tags"
SOURCES = "sources"
LATEST = "latest"


@dataclass(frozen=True)
class Group:
    """One folder of symlinks (a tag or a source): name -> the snapshot folder it points at,
    `latest` included."""

    links: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """The top level: `snapshots` maps folder names to snapshots; `latest` is the newest one's
    folder name (None in an empty repository); `tags` and `sources` map group names to groups."""

    snapshots: dict[str, Snapshot]
    latest: str | None
    tags: dict[str, Group]
    sources: dict[str, Group]


def safe_component(text: str) -> str:
    """`text` as one path component: '/' and NUL become '_', '', '.' and '..' become '_'."""
    cleaned = text.replace("/", "_").replace("\0", "_")
    return "_" if cleaned in ("", ".", "..") else cleaned


def _unique(names: Iterable[str], reserved: Sequence[str] = ()) -> list[str]:
    """The names in order, a later duplicate suffixed `~2`, `~3`, ... (never a reserved name)."""
    taken = set(reserved)
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}~{n}"
        taken.add(candidate)
        out.append(candidate)
    return out


def snapshot_name(snap: Snapshot) -> str:
    """`<time>_<short id>`, the time in the local time zone to the second."""
    when = snap.time.astimezone().strftime("%Y-%m-%dT%H:%M:%S")
    return f"{when}_{snap.short_id()}"


def source_name(snap: Snapshot, with_host: bool) -> str:
    """The snapshot's source paths as one name (`/srv/practice` -> `srv_practice`, several
    joined by `+`), `@host` added when `with_host`."""
    paths = "+".join(p.strip("/") for p in snap.display_paths()) or "_"
    return safe_component(f"{paths}@{snap.host}" if with_host else paths)


def build(snapshots: Sequence[Snapshot]) -> Layout:
    """The layout of these snapshots (any order; sorted here by time, then id)."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id))
    names = _unique(snapshot_name(s) for s in ordered)
    by_name = dict(zip(names, ordered, strict=True))
    folder_of = {s.id: name for name, s in by_name.items()}

    several_hosts = len({s.host for s in ordered}) > 1
    tag_members: dict[str, list[Snapshot]] = {}
    source_members: dict[str, list[Snapshot]] = {}
    for snap in ordered:
        for tag in dict.fromkeys(snap.tags):  # a tag given twice is one membership
            tag_members.setdefault(tag, []).append(snap)
        source_members.setdefault(source_name(snap, several_hosts), []).append(snap)
    return Layout(
        snapshots=by_name,
        latest=names[-1] if names else None,
        tags=_groups(tag_members, folder_of),
        sources=_groups(source_members, folder_of),
    )


def _groups(members: dict[str, list[Snapshot]], folder_of: dict[str, str]) -> dict[str, Group]:
    keys = sorted(members)
    group_names = _unique(safe_component(k) for k in keys)
    groups = {}
    for group_name, key in zip(group_names, keys, strict=True):
        folders = [folder_of[s.id] for s in members[key]]  # oldest first
        links = {folder: f"../../{SNAPSHOTS}/{folder}" for folder in folders}
        # `latest` wins its name: a snapshot folder is never called `latest` (it has a time).
        links[LATEST] = links[folders[-1]]
        groups[group_name] = Group(links)
    return groups
