"""Who is logged in to `dedupe ui`: sessions held in the server's memory, nothing on disk.

What a session holds, and why:
- the unlocked `Repository` (its master key in memory, as any running `dedupe` command holds
  it). The password itself is not kept: it is used once to unlock the key file and dropped.
  Re-deriving the key on every page would cost a full Argon2id derivation (about a second and
  hundreds of MiB) per click and would need the password kept anyway.
- one exception: the status page runs `dedupe snapshots` as child processes (as `dedupe
  status` does), and a child needs a password. The profile's `password-file`/`-command` (or
  the server's own `DEDUPE_PASSWORD_*`) is used where there is one; only where there is none is
  the typed password kept, in this process's memory, for the life of the session.
- a CSRF token (`csrf`), compared in constant time with the one every form sends back;
- the time it was last used: a session idle for longer than the timeout is ended (its key and
  any kept password are dropped) and the next request goes to the login page.

The session id is 256 random bits in an `HttpOnly`, `SameSite=Strict` cookie; a new id is made
at every login, so an id seen before login is worth nothing after it.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dedupe.repo.repository import Repository
from dedupe.run.children import Password
from dedupe.storage import Storage

MAX_SESSIONS = 20
"""Logged-in browsers at once; the least recently used goes first beyond this."""


@dataclass
class Session:
    """One logged-in browser. `jobs` are its restores (id -> job object), `memo` what its pages
    computed and may reuse (the forecast), `child_password` the password source for the status
    page's child processes."""

    id: str
    csrf: str
    storage: Storage
    repo: Repository
    child_password: Password | None
    last_seen: float
    index_names: frozenset[str] = frozenset()
    jobs: dict[str, Any] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)
    ended: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())

    def current_repo(self) -> Repository:
        """The unlocked repository with an index that names what the repository holds now.

        The nightly run adds index files while the page is open; a blob of a newer snapshot
        is missing from an index loaded before it. When the listing of `index/` changed, a
        fresh `Repository` (same key, no new derivation) loads the index again."""
        with self.lock:
            names = frozenset(info.name for info in self.storage.list("index/"))
            if names != self.index_names:
                fresh = Repository(
                    self.storage, self.repo.key, self.repo.settings, self.repo.key_name
                )
                fresh.cache_dir = self.repo.cache_dir
                _ = fresh.index
                self.repo, self.index_names = fresh, names
                self.memo.clear()
            return self.repo

    def running_jobs(self) -> bool:
        return any(getattr(job, "running", False) for job in self.jobs.values())

    def close(self) -> None:
        """Drop the key and any kept password; close the storage unless a restore still reads
        it (the restore closes it when it ends)."""
        self.ended = True
        self.child_password = None
        self.memo.clear()
        if not self.running_jobs():
            self.storage.close()


class SessionStore:
    """The sessions of one server, by id. `clock` is seconds (monotonic); `idle_seconds` the
    timeout."""

    def __init__(self, idle_seconds: float, clock: Callable[[], float]) -> None:
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(
        self, storage: Storage, repo: Repository, child_password: Password | None
    ) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            storage=storage,
            repo=repo,
            child_password=child_password,
            last_seen=self.clock(),
        )
        with self._lock:
            self._expire_locked()
            while len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
                self._drop_locked(oldest.id)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle time restarts), else None."""
        with self._lock:
            self._expire_locked()
            session = self._sessions.get(session_id or "")
            if session is not None:
                session.last_seen = self.clock()
            return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._drop_locked(session_id)

    def end_all(self) -> None:
        with self._lock:
            for session_id in list(self._sessions):
                self._drop_locked(session_id)

    def _expire_locked(self) -> None:
        now = self.clock()
        for session in list(self._sessions.values()):
            if now - session.last_seen > self.idle_seconds:
                self._drop_locked(session.id)

    def _drop_locked(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.close()
