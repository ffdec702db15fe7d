"""The retention journal: an append-only record, inside the repository, of every snapshot,
forget, gc, hold, release, copy, archive, key change and retirement (docs/FORMAT.md, "The
retention journal"; the entry's fields are `dedupe.model.journal`).

Guarantees:
- An entry is one object, `journal/<name>`, where name = BLAKE3 of its stored (sealed) bytes:
  it cannot be altered or swapped for another without its name changing, and it is opened only
  with the repository's key (MAC), like every other object.
- Each entry names the entries that were newest when it was written (`prev`): a DAG. An entry
  removed from the middle is named by a later one and reported by `check` (`chain_problems`);
  one removed from the end is caught by comparing what the journal says exists and is held
  with the manifests and hold records (`replay`, used by `check`).
- Concurrent writers never lose entries: each writes a new object under a new name (a random
  nonce makes every sealed entry distinct) and never rewrites one; two that raced both name
  the same predecessors, and the next entry names both.
- A repository without a journal works as before; the journal starts at its first entry, which
  also records every snapshot (and hold) that existed then (`baseline`).

Appending reads the links (name -> predecessors) of every entry to find the newest ones; they
never change for a name, so they are kept in the local cache folder (`journal-links`) and only
entries new since are read. Losing the cache costs one read of each entry.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shlex
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from dedupe.crypto.seal import Sealer, content_hash
from dedupe.errors import DamageError, DedupeError, ObjectNotFound, UsageError
from dedupe.model.journal import Entry, SnapshotRef, decode_entry, encode_entry
from dedupe.model.snapshot import Snapshot, decode_hold_record, decode_snapshot
from dedupe.repo.config import Settings
from dedupe.storage.base import Storage, redact_url

JOURNAL_FOLDER = "journal/"
LINKS_FILE = "journal-links"


class _Repo(Protocol):
    storage: Storage
    sealer: Sealer
    settings: Settings
    cache_dir: str | None


# --- who and what -----------------------------------------------------------------------------


def who() -> tuple[str, str]:
    """(host, user) of this process, as the entry records them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): the uid still says who
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return socket.gethostname(), user


def place(url: str) -> str:
    """A repository's URL as an entry records it: any password shown as `***`, a local path
    made absolute (a relative one means nothing a month later)."""
    if "://" not in url and url:
        return os.path.abspath(url)
    return redact_url(url)


def command_line(argv: Sequence[str]) -> str:
    """The command as the entry records it: `dedupe` and its arguments, with any password in a
    URL shown as `***` (a password is never on the command line; a URL may still carry one)."""
    return shlex.join(["dedupe", *(redact_url(arg) for arg in argv)])


def ref(snapshot: Snapshot, why: str | None = None, held: bool | None = None) -> SnapshotRef:
    """How an entry names `snapshot`."""
    return SnapshotRef(
        id=snapshot.id,
        time=snapshot.time,
        host=snapshot.host,
        paths=tuple(snapshot.display_paths()),
        why=why,
        held=snapshot.held if held is None else held,
    )


def new_entry(action: str, command: str, **fields: object) -> Entry:
    """An entry of `action` made now, by this host and user (`append` fills `prev`/`seq`)."""
    host, user = who()
    return Entry(
        action=action,
        time=datetime.now().astimezone(),
        host=host,
        user=user,
        command=command,
        **fields,  # type: ignore[arg-type]
    )


# --- reading ----------------------------------------------------------------------------------


def _is_name(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def list_names(repo: _Repo) -> list[str]:
    names = []
    for info in repo.storage.list(JOURNAL_FOLDER):
        name = info.name.split("/")[-1]
        if _is_name(name):
            names.append(name)
    return names


def read_entry(repo: _Repo, name: str) -> Entry:
    """The entry named `name`, verified: its bytes hash to its name (not replaced), its seal
    opens (not forged) and it decodes. DamageError otherwise; ObjectNotFound if absent."""
    data = repo.storage.get(JOURNAL_FOLDER + name)
    if content_hash(data).hex() != name:
        raise DamageError(f"journal entry {name[:8]} does not match its name (replaced or damaged)")
    return decode_entry(repo.sealer.open(data, f"journal entry {name[:8]}"), name)


@dataclass
class Journal:
    """Every readable entry by name, the names that could not be read (with why), and the
    names listed."""

    entries: dict[str, Entry] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)

    def ordered(self) -> list[tuple[str, Entry]]:
        """Entries in an order that respects the chain (a predecessor before its successors):
        by sequence number, then time, then name."""
        return sorted(self.entries.items(), key=lambda item: (item[1].seq, item[1].time, item[0]))

    def start(self) -> Entry | None:
        """The first entry (the journal starts there), or None for an empty journal."""
        ordered = self.ordered()
        return ordered[0][1] if ordered else None


def load(repo: _Repo) -> Journal:
    """Every entry of the journal, read and verified (for `journal` and `check`)."""
    journal = Journal(listed=list_names(repo))
    for name in journal.listed:
        try:
            journal.entries[name] = read_entry(repo, name)
        except ObjectNotFound:
            continue
        except DamageError as exc:
            journal.damaged[name] = str(exc)
    return journal


def chain_problems(journal: Journal) -> list[str]:
    """Errors in the chain: an entry that a later one names but that is not there (removed),
    and entries that cannot be read (damaged or replaced)."""
    problems = [f"{text}" for _name, text in sorted(journal.damaged.items())]
    present = set(journal.listed)
    for _name, entry in journal.ordered():
        for prev in entry.prev:
            if prev not in present:
                problems.append(
                    f"journal entry {prev[:8]} is missing: the entry of "
                    f"{entry.time.isoformat(timespec='seconds')} ({entry.action}) names it as "
                    "its predecessor, so an entry was removed from the journal"
                )
    return problems


# --- appending --------------------------------------------------------------------------------


def _links_path(repo: _Repo) -> str | None:
    if not repo.cache_dir:
        return None
    return os.path.join(repo.cache_dir, repo.settings.repo_id.hex(), LINKS_FILE)


def _read_links(path: str | None) -> dict[str, tuple[int, list[str]]]:
    if path is None:
        return {}
    try:
        with open(path, encoding="ascii") as f:
            obj = json.load(f)
        return {
            str(name): (int(seq), [str(p) for p in prev])
            for name, (seq, prev) in obj["links"].items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # a missing or unreadable cache only costs reading the entries again


def _write_links(path: str | None, links: dict[str, tuple[int, list[str]]]) -> None:
    if path is None:
        return
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="ascii") as f:
            json.dump({"v": 1, "links": {n: [s, p] for n, (s, p) in links.items()}}, f)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def heads(repo: _Repo) -> tuple[list[str], int]:
    """(the newest entries: those no other entry names, the sequence number a new entry gets).
    An entry that cannot be read is counted as newest: naming it costs nothing and loses no
    link."""
    path = _links_path(repo)
    links = _read_links(path)
    names = list_names(repo)
    unreadable: list[str] = []
    fresh = False
    for name in names:
        if name in links:
            continue
        try:
            entry = read_entry(repo, name)
        except ObjectNotFound:
            continue
        except DamageError:
            unreadable.append(name)
            continue
        links[name] = (entry.seq, list(entry.prev))
        fresh = True
    if fresh:
        _write_links(path, links)
    listed = set(names)
    named = {p for name in names if name in links for p in links[name][1]}
    newest = sorted((listed - named) | set(unreadable))
    seq = max((links[n][0] for n in names if n in links), default=-1) + 1
    return newest, seq


def baseline(repo: _Repo) -> tuple[SnapshotRef, ...]:
    """Every readable snapshot now, held as its manifest or a hold record says (for the first
    entry of a journal). A manifest or record that cannot be read is left out: `check` reports
    it as damage on its own."""
    held: set[str] = set()
    for info in repo.storage.list("holds/"):
        name = info.name.split("/")[-1]
        if not _is_name(name):
            continue
        with contextlib.suppress(DedupeError):
            sealed = repo.storage.get(info.name)
            decode_hold_record(repo.sealer.open(sealed, "hold record"), name)
            held.add(name)
    refs = []
    for info in repo.storage.list("snapshots/"):
        name = info.name.split("/")[-1]
        if len(name) != 64:
            continue
        with contextlib.suppress(DedupeError):
            sealed = repo.storage.get(info.name)
            snap = decode_snapshot(repo.sealer.open(sealed, "snapshot"), name)
            refs.append(ref(snap, snap.hold_reason, snap.held or snap.id in held))
    return tuple(sorted(refs, key=lambda r: (r.time, r.id)))


def append(repo: _Repo, entry: Entry) -> str:
    """Add `entry` to the journal (its `prev` and `seq` are set here); returns its name.

    The object is new and written once (the storage's put is atomic and durable), so a crash
    leaves the entry whole or absent; a writer racing this one writes its own object."""
    newest, seq = heads(repo)
    entry = replace(entry, prev=tuple(newest), seq=seq)
    if not newest:
        # What existed before this entry: a snapshot it adds itself is its own news.
        adds = entry.action == "snapshot" or entry.direction == "in"
        own = set(entry.snapshot_ids()) if adds else set()
        entry = replace(entry, baseline=tuple(r for r in baseline(repo) if r.id not in own))
    data = repo.sealer.seal(encode_entry(entry))
    name = content_hash(data).hex()
    repo.storage.put(JOURNAL_FOLDER + name, data)
    path = _links_path(repo)
    if path is not None:
        links = _read_links(path)
        links[name] = (entry.seq, list(entry.prev))
        _write_links(path, links)
    return name


def _stored_ref(repo: _Repo, snapshot_id: str) -> SnapshotRef | None:
    """`snapshot_id` as `repo` stores it now (held by its manifest or a hold record), or None
    when its manifest cannot be read."""
    try:
        sealed = repo.storage.get(f"snapshots/{snapshot_id}")
        snap = decode_snapshot(repo.sealer.open(sealed, "snapshot"), snapshot_id)
        held = snap.held or repo.storage.exists(f"holds/{snapshot_id}")
    except DedupeError:
        return None
    return ref(snap, snap.hold_reason if held else None, held)


def record_copy(
    source: _Repo,
    dest: _Repo,
    snapshots: Iterable[Snapshot],
    moved: Iterable[str],
    command: str,
    source_url: str,
    dest_url: str,
) -> None:
    """Journal a copy on both sides: `moved` are the ids of `snapshots` the copy wrote into
    `dest` or held there (`CopyResult.copied` and `.held`). The destination's entry first (an
    addition is journalled once made), as received ("in", each snapshot held as it is held
    there), then the source's ("out"). Nothing moved: nothing journalled."""
    wanted = set(moved)
    sent = [s for s in snapshots if s.id in wanted]
    if not sent:
        return
    received = tuple(r for r in (_stored_ref(dest, s.id) for s in sent) if r is not None)
    append(
        dest,
        new_entry(
            "copy", command, snapshots=received, direction="in", details={"peer": place(source_url)}
        ),
    )
    append(
        source,
        new_entry(
            "copy",
            command,
            snapshots=tuple(ref(s) for s in sent),
            direction="out",
            details={"peer": place(dest_url)},
        ),
    )


# --- what the journal says should be there ----------------------------------------------------


@dataclass
class Expected:
    """What the journal says about the snapshots: those that exist (with the entry that made
    them), those removed (with the entry that removed them), and those held (with the entry
    that held them and its reason)."""

    present: dict[str, tuple[SnapshotRef, Entry]] = field(default_factory=dict)
    removed: dict[str, tuple[SnapshotRef, Entry]] = field(default_factory=dict)
    held: dict[str, tuple[SnapshotRef, Entry]] = field(default_factory=dict)


def replay(ordered: Iterable[tuple[str, Entry]]) -> Expected:
    """Apply each entry's effect (`dedupe.model.journal`) in chain order. Pure."""
    state = Expected()

    def add(ref_: SnapshotRef, entry: Entry, held: bool) -> None:
        state.present[ref_.id] = (ref_, entry)
        state.removed.pop(ref_.id, None)
        if held:
            state.held[ref_.id] = (ref_, entry)

    for _name, entry in ordered:
        for ref_ in entry.baseline or ():
            if ref_.id not in state.removed:
                add(ref_, entry, ref_.held)
        action = entry.action
        for ref_ in entry.snapshots:
            if action == "snapshot":
                add(ref_, entry, False)
            elif action == "forget":
                state.present.pop(ref_.id, None)
                state.held.pop(ref_.id, None)
                state.removed[ref_.id] = (ref_, entry)
            elif action == "gc":  # lost manifests whose loss the user accepted
                state.present.pop(ref_.id, None)
                state.held.pop(ref_.id, None)
            elif action == "hold":
                state.held[ref_.id] = (ref_, entry)
            elif action == "release":
                state.held.pop(ref_.id, None)
            elif action in ("copy", "archive") and entry.direction == "in":
                add(ref_, entry, ref_.held)
    return state


def describe_time(moment: datetime) -> str:
    return moment.astimezone().strftime("%a %Y-%m-%d %H:%M")


def parse_since(text: str) -> datetime:
    """`--since DATE`: an ISO date or date and time (local when no offset is given)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"invalid --since {text!r}: give a date such as 2026-05-01 or 2026-05-01T18:00"
        ) from None
    return moment.astimezone() if moment.tzinfo is None else moment
