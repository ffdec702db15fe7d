"""Which snapshot a `SNAP` argument means: filters by host, tag and source path, and `latest`
resolved per path (the contract's "Where a command also names a PATH ...").

Guarantees:
- `latest` is the newest snapshot the filter admits; when the command also names paths, it is
  the newest admitted snapshot whose tree holds every one of them. A nightly job that saves a
  folder and then a database dump as two snapshots therefore serves both `cat latest
  practice.sql` and `ls latest /srv/practice`. "Newest" is the order `manifests.load_all`
  gives (time, then id), so the answer never depends on listing order.
- An id or prefix names exactly that snapshot, never another: a filter that does not admit it
  is refused (UsageError) rather than silently ignored.
- When a path is not in the chosen snapshot (or in none), the UsageError names the snapshot
  (short id and time) and how it was chosen, so a user can tell which `latest` they got.
- Holding a path is judged by the tree itself (a folder excluded or deleted before the night's
  backup is not held), reading only the trees along that path; a tree that cannot be read is
  a DamageError, never "not held".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dedupe.errors import UsageError
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import Node
from dedupe.repo import manifests, treewalk
from dedupe.repo.repository import Repository

LATEST = "latest"


@dataclass(frozen=True)
class SnapshotFilter:
    """Which snapshots `snapshots`, `find` and `latest` consider (restic's semantics).

    `hosts`: the snapshot's host is one of them. `tags`: groups, each the tags of one `--tag`
    value (`--tag a,b` is one group): the snapshot carries every tag of at least one group.
    `paths`: every one is a source path of the snapshot (a stream's `/NAME` counts). An empty
    field admits every snapshot."""

    hosts: tuple[str, ...] = ()
    tags: tuple[tuple[str, ...], ...] = ()
    paths: tuple[bytes, ...] = ()

    @classmethod
    def parse(
        cls, hosts: Iterable[str] = (), tags: Iterable[str] = (), paths: Iterable[str] = ()
    ) -> SnapshotFilter:
        """The filter from command-line values; UsageError (exit 2) for an empty or unusable
        value, naming it."""
        host_list = []
        for host in hosts:
            if not host.strip():
                raise UsageError("--host needs a host name, e.g. --host frontdesk")
            host_list.append(host)
        groups = []
        for value in tags:
            group = tuple(t.strip() for t in value.split(","))
            if not all(group):
                raise UsageError(
                    f"--tag {value!r} has an empty tag: give tags such as --tag nightly, or "
                    "--tag nightly,db for snapshots that carry both"
                )
            groups.append(group)
        path_list = []
        for path in paths:
            if "\0" in path or not treewalk.split_path(path):
                raise UsageError(
                    f"--path {path!r} is not a path a snapshot backs up: give a folder as it "
                    "was backed up (e.g. --path /srv/practice) or a stream's name (--path "
                    "practice.sql)"
                )
            path_list.append(source_path(path))
        return cls(tuple(host_list), tuple(groups), tuple(path_list))

    @property
    def active(self) -> bool:
        return bool(self.hosts or self.tags or self.paths)

    def admits(self, snap: Snapshot) -> bool:
        if self.hosts and snap.host not in self.hosts:
            return False
        if self.tags and not any(all(t in snap.tags for t in group) for group in self.tags):
            return False
        return all(p in snap.paths for p in self.paths)

    def describe(self) -> str:
        """The filter as the options that gave it, e.g. `--host clinic --tag nightly`."""
        words = [f"--host {h}" for h in self.hosts]
        words += [f"--tag {','.join(g)}" for g in self.tags]
        words += [f"--path {os.fsdecode(p)}" for p in self.paths]
        return " ".join(words)


def source_path(path: str | bytes) -> bytes:
    """A path as manifests record sources: absolute and normalised; a relative one is taken
    from the snapshot's root, as `ls` and `cat` take it (`practice.sql` is `/practice.sql`)."""
    return b"/" + b"/".join(treewalk.split_path(path))


def filter_snapshots(snaps: Iterable[Snapshot], flt: SnapshotFilter) -> list[Snapshot]:
    """The snapshots `flt` admits, in the order given."""
    return [s for s in snaps if flt.admits(s)]


def label(snap: Snapshot) -> str:
    """`snapshot 1a2b3c4d (2026-12-01T02:00:00+01:00)`: how messages name a snapshot."""
    return f"snapshot {snap.short_id()} ({snap.time.isoformat(timespec='seconds')})"


Found = tuple[bytes, Node | None]
"""A path as found in a tree: its absolute form, and its node (None for the root)."""


@dataclass(frozen=True)
class Selection:
    """The snapshot a `SNAP` argument chose, and why.

    `how` completes "chosen as ...": `the newest snapshot` / `the newest snapshot that holds
    /srv/practice` (with the filter's options when one was given), or `named by id 1a2b`.
    `found` has one (absolute path, node) per path asked for, in order. `newest` is the newest
    snapshot the filter admits when `latest` had to pass over it because it does not hold the
    paths (a user may want to hear that); otherwise None."""

    snapshot: Snapshot
    how: str
    found: tuple[Found, ...] = ()
    newest: Snapshot | None = None

    def describe(self) -> str:
        """`snapshot 1a2b3c4d (2026-12-01T02:00:00+01:00), the newest snapshot that holds ...`"""
        return f"{label(self.snapshot)}, {self.how}"


def select(
    repo: Repository,
    spec: str,
    paths: Sequence[str | bytes] = (),
    flt: SnapshotFilter = SnapshotFilter(),
    snapshots: Sequence[Snapshot] | None = None,
) -> Selection:
    """Resolve `spec` (a full id, a unique prefix of 4+ hex digits, or `latest`) for a command
    that names `paths` (none: the whole snapshot). See the module docstring for the rules.

    `snapshots` (oldest first, as `manifests.load_all` returns them) saves listing the
    repository again when the caller has them. Raises UsageError (exit 2) when nothing fits,
    with a message naming the snapshot chosen and how; DamageError when a tree on the way
    cannot be read."""
    wanted = [p for p in paths if treewalk.split_path(p)]  # the root is in every snapshot
    if spec != LATEST:
        snap = manifests.resolve(repo, spec)
        how = f"named by id {spec}"
        if flt.active and not flt.admits(snap):
            raise UsageError(
                f"{label(snap)} does not match {flt.describe()}: it is from host {snap.host}, "
                f"tags {', '.join(snap.tags) or '(none)'}, paths "
                f"{', '.join(snap.display_paths())}. Leave the filter out, or use latest."
            )
        found = tuple(_locate(repo, snap, p, how) for p in paths)
        return Selection(snap, how, found)

    admitted = filter_snapshots(manifests.load_all(repo) if snapshots is None else snapshots, flt)
    where = f" with {flt.describe()}" if flt.active else ""
    if not admitted:
        if flt.active:
            raise UsageError(
                f"no snapshot matches {flt.describe()}; 'dedupe snapshots' lists them all "
                "with their hosts, tags and paths"
            )
        raise UsageError("the repository has no snapshots")
    newest = admitted[-1]
    if not wanted:
        found = tuple(_locate(repo, newest, p, "") for p in paths)
        return Selection(newest, f"the newest snapshot{where}", found)
    shown = ", ".join(os.fsdecode(source_path(p)) for p in wanted)
    how = f"the newest snapshot{where} that holds {shown}"
    for snap in reversed(admitted):
        held = [_holds(repo, snap, p) for p in paths]
        if all(item is not None for item in held):
            found = tuple(item for item in held if item is not None)
            return Selection(snap, how, found, newest if snap is not newest else None)
    subject = f"{shown}: not" if len(wanted) == 1 else f"{shown}: not all"
    older = "neither it nor any older one holds" if len(admitted) > 1 else "it does not hold"
    raise UsageError(
        f"{subject} in any snapshot{where} ({len(admitted)} searched). latest means the newest "
        f"snapshot that holds the path; the newest{where} is {label(newest)}, and {older} "
        f"{'them' if len(wanted) > 1 else 'it'}. Check the spelling against 'dedupe ls latest', "
        "or search by file name with 'dedupe find NAME'."
    )


def _holds(repo: Repository, snap: Snapshot, path: str | bytes) -> Found | None:
    """(absolute path, node) when the snapshot's tree holds `path`, else None."""
    try:
        return treewalk.find(repo, snap.tree, path)
    except UsageError:
        return None


def _locate(repo: Repository, snap: Snapshot, path: str | bytes, how: str) -> Found:
    """`path` in the chosen snapshot, or UsageError naming the snapshot and how it was chosen."""
    found = _holds(repo, snap, path)
    if found is None:
        raise UsageError(
            f"{os.fsdecode(source_path(path))}: not in {label(snap)}, {how}. "
            f"'dedupe ls {snap.short_id()}' lists what it holds; 'dedupe find NAME' searches "
            "every snapshot by file name; with latest instead of an id, the newest snapshot "
            "that holds the path is used."
        )
    return found
