"""What is already on disk where a restore would put a file: keep it or replace it
(`--overwrite`), and does it hold exactly the snapshot's content (`--verify`)?

Everything here only looks: names are examined relative to an open folder descriptor without
following symlinks, files are opened read-only, non-blocking (a FIFO planted in the target does
not hang the restore) and, where allowed, without updating their access time. So the restorer
and the dry run can ask the same questions and get the same answers.

Content is compared blob by blob against the snapshot's keyed content ids, each piece as long as
the index says its blob is: no chunker runs, so a file backed up with other chunk sizes (a
copied snapshot) compares just as well, and a match means every byte is the backed-up one.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import NamedTuple

from dedupe.errors import DamageError
from dedupe.model.tree import FILE, SYMLINK, Node
from dedupe.repo.repository import Repository

ALWAYS = "always"
IF_CHANGED = "if-changed"
IF_NEWER = "if-newer"
NEVER = "never"
MODES = (ALWAYS, IF_CHANGED, IF_NEWER, NEVER)
DEFAULT_MODE = IF_CHANGED
"""Like restic's if-changed: a file whose size and modification time match the snapshot's is
taken as restored, any other file is compared by content and rewritten only if it differs. A
restore over a tree that is mostly right (or a second run after an interrupted one) writes only
what is wrong, and never reads from the repository what the disk already holds."""

CREATE = "create"
OVERWRITE = "overwrite"
SKIP = "skip"
CONFLICT = "conflict"

UNCHANGED = "unchanged"
"""The reason of a file skipped because it already holds the snapshot's content (it gets the
snapshot's permissions and times; its content is not rewritten)."""

MAX_PIECE = 16 << 20
"""No chunker makes a chunk larger (chunker parameters are capped at 16 MiB): an index entry
that claims more is not compared (the file counts as different), so a hostile index cannot make
a comparison allocate gigabytes."""

READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
NOATIME = getattr(os, "O_NOATIME", 0)


class Decision(NamedTuple):
    """What to do with one file or symlink: `action` is CREATE, OVERWRITE, SKIP or CONFLICT;
    `reason` says why in words (UNCHANGED for a file that is already right)."""

    action: str
    reason: str = ""


def look(parent: int | None, name: bytes) -> os.stat_result | None:
    """What is at `name` in the folder `parent` (None: the folder does not exist yet), without
    following a symlink; None if nothing is there."""
    if parent is None:
        return None
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def decide(
    repo: Repository, parent: int | None, node: Node, mode: str, *, exact: bool = False
) -> Decision:
    """What a restore in `mode` does with `node` (a file or a symlink) at its place in `parent`.
    `exact` (for --verify): under if-changed, a matching size and time is not enough, the
    content is compared too."""
    st = look(parent, node.name)
    if st is None:
        return Decision(CREATE)
    if stat.S_ISDIR(st.st_mode):
        if mode == NEVER:
            return Decision(SKIP, "a folder of that name is there; --overwrite never keeps it")
        return Decision(CONFLICT, "a folder of that name is there; move it away first")
    if mode == NEVER:
        return Decision(SKIP, "already there; --overwrite never keeps it")
    if mode == ALWAYS:
        return Decision(OVERWRITE)
    if mode == IF_NEWER:
        if node.mtime_ns > st.st_mtime_ns:
            return Decision(OVERWRITE, "the backup's copy is newer")
        return Decision(SKIP, "the copy on disk is as new or newer; --overwrite if-newer keeps it")
    assert parent is not None
    if _unchanged(repo, parent, node, st, exact):
        return Decision(SKIP, UNCHANGED)
    return Decision(OVERWRITE, "changed")


def _unchanged(repo: Repository, parent: int, node: Node, st: os.stat_result, exact: bool) -> bool:
    if node.type == SYMLINK:
        return stat.S_ISLNK(st.st_mode) and _link_target(parent, node.name) == node.target
    if node.type != FILE or not stat.S_ISREG(st.st_mode) or st.st_size != node.size:
        return False
    if st.st_mtime_ns == node.mtime_ns and not exact:
        return True
    try:
        return mismatch(repo, parent, node) is None
    except DamageError:  # cannot compare: count it as changed; writing it will report damage
        return False


def _link_target(parent: int, name: bytes) -> bytes | None:
    try:
        return os.readlink(name, dir_fd=parent)
    except OSError:
        return None


def open_existing(parent: int, name: bytes) -> int | None:
    """A read-only descriptor of the regular file `name` in `parent`, or None if there is none
    (or something else is there: a symlink, a folder, a FIFO)."""
    fd = None
    for flags in (READ_FLAGS | NOATIME, READ_FLAGS):
        try:
            fd = os.open(name, flags, dir_fd=parent)
            break
        except PermissionError:
            continue  # O_NOATIME is refused on files we do not own
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO, errno.EISDIR):
                return None
            raise
    if fd is None:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def mismatch(repo: Repository, parent: int, node: Node) -> str | None:
    """None if the entry `node.name` in `parent` holds exactly the snapshot's content (a file)
    or target (a symlink), else what differs, in words (DamageError: see content_mismatch)."""
    if node.type == SYMLINK:
        target = _link_target(parent, node.name)
        if target is None:
            return "it is not there, or not a symlink"
        return None if target == node.target else "it points somewhere else"
    fd = open_existing(parent, node.name)
    if fd is None:
        return "it is not there, or not a regular file"
    try:
        return content_mismatch(repo, fd, node)
    finally:
        os.close(fd)


def content_mismatch(repo: Repository, fd: int, node: Node) -> str | None:
    """None if the open file `fd` holds exactly `node`'s content, else what differs.
    DamageError when the repository's index cannot say (a blob missing from it, or sizes
    that cannot be right)."""
    size = os.fstat(fd).st_size
    if size != node.size:
        return f"its size is {size} bytes, the backup's is {node.size}"
    offset = 0
    for blob_id in node.content:
        loc = repo.index.lookup(blob_id)
        if loc is None:
            raise DamageError(
                f"blob {blob_id.hex()[:16]} is missing from the index: cannot compare"
            )
        if loc.raw_length > MAX_PIECE or offset + loc.raw_length > node.size:
            raise DamageError(f"blob {blob_id.hex()[:16]} has an impossible size in the index")
        piece = _read_exactly(fd, loc.raw_length)
        if len(piece) != loc.raw_length:
            return f"it is shorter than the backup's copy ({offset + len(piece)} bytes)"
        if repo.hash(piece) != blob_id:
            return f"its bytes {offset} to {offset + len(piece)} differ from the backup's"
        offset += len(piece)
    if offset != node.size:
        raise DamageError("the snapshot's content ids do not add up to the file's recorded size")
    if os.read(fd, 1):
        return "it is longer than the backup's copy"
    return None


def _read_exactly(fd: int, length: int) -> bytes:
    parts = []
    remaining = length
    while remaining:
        data = os.read(fd, min(remaining, 1 << 20))
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return b"".join(parts)


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class TargetView:
    """Follows a restore's steps (`dedupe.restore.steps`) through the target as it is now, and
    says what a restore in `mode` does with each: files and symlinks as `decide` says; folders
    CREATE, SKIP ("exists") or CONFLICT (something else has the name: the restore refuses it).

    It only looks. Folders are opened relative to their parent without following symlinks, so
    a symlink in the target (planted by anyone, or by this snapshot) is never looked through.
    Below a folder that does not exist yet everything is CREATE: names are unique within a
    folder, so the restore creates that folder empty. Use it as a context manager (it holds
    one descriptor per folder level).
    """

    def __init__(self, repo: Repository, target: str, mode: str, *, exact: bool = False) -> None:
        self.repo = repo
        self.mode = mode
        self.exact = exact
        try:
            top: int | None = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            top = None
        self._fds: list[int | None] = [top]

    def __enter__(self) -> TargetView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._fds:
            fd = self._fds.pop()
            if fd is not None:
                os.close(fd)

    def see(self, kind: str, node: Node | None) -> Decision:
        """The decision for the next step (`kind` as in steps.Step)."""
        parent = self._fds[-1]
        if kind == "dir":
            assert node is not None
            decision, fd = self._folder(parent, node.name)
            self._fds.append(fd)
            return decision
        if kind == "dir_done":
            fd = self._fds.pop()
            if fd is not None:
                os.close(fd)
            return Decision(SKIP)
        if kind == "damaged" or node is None:
            return Decision(SKIP)
        return decide(self.repo, parent, node, self.mode, exact=self.exact)

    @staticmethod
    def _folder(parent: int | None, name: bytes) -> tuple[Decision, int | None]:
        if parent is None:
            return Decision(CREATE), None
        try:
            return Decision(SKIP, "exists"), os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return Decision(CREATE), None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return Decision(
                    CONFLICT, "something that is not a folder has that name; move it away first"
                ), None
            raise
