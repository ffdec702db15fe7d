"""Retiring a repository on purpose (`dedupe retire`, a drive taken out of rotation): what makes
it unreadable, what says so, and what finishes an interrupted retirement.

Order: the plaintext marker `retired` first, so an interrupted retirement already refuses to open
with a clear message and `finish_retirement` completes it without a password; then every key file
(without them no password derives the key); then the config's sealed settings, leaving only the
plaintext envelope. The caller journals the retirement in the source repository first and holds
the exclusive lock here.
"""

from __future__ import annotations

from datetime import datetime

from dedupe import codec
from dedupe.errors import DedupeError, ObjectNotFound, WrongPassword
from dedupe.repo import config as config_mod
from dedupe.storage.base import Storage

# Present once a repository was retired (`dedupe retire`): plaintext {v, repo, time}; its key
# files and sealed settings are gone, and `Repository.open` refuses it by this marker.
RETIRED = "retired"


def retired_on(storage: Storage) -> datetime | None:
    """When the repository at `storage` was retired, or None if it was not. A marker that
    cannot be decoded still means retired (its time is then unknown: the epoch)."""
    try:
        data = storage.get(RETIRED)
    except ObjectNotFound:
        return None
    try:
        obj = codec.check_version(codec.unpack(data, "retirement marker"), "retirement marker")
        return datetime.fromisoformat(codec.field(obj, "time", str, "retirement marker"))
    except (DedupeError, ValueError):
        return datetime.fromtimestamp(0).astimezone()


def refuse_retired(storage: Storage) -> None:
    when = retired_on(storage)
    if when is not None:
        raise WrongPassword(
            f"the repository at {storage.url} was retired on {when:%Y-%m-%d %H:%M} ('dedupe "
            "retire'): its keys were destroyed on purpose, so no password opens it and its "
            "backups cannot be restored"
        )


def finish_retirement(storage: Storage) -> None:
    """The destructive part of `Repository.retire`, also what completes an interrupted one:
    every key file deleted, then the config rewritten as its plaintext envelope with an empty
    sealed part. Needs no key."""
    for info in storage.list("keys/"):
        try:
            storage.delete(info.name)
        except ObjectNotFound:
            pass
    try:
        repo_id, _box = config_mod.read_envelope(storage.get("config"))
    except ObjectNotFound:
        return
    except DedupeError:
        repo_id = bytes(16)  # a damaged envelope: nothing in it is worth keeping
    storage.put("config", codec.pack({"v": codec.FORMAT_VERSION, "repo": repo_id, "box": b""}))


def retire(storage: Storage, repo_id: bytes, when: datetime) -> None:
    """Write the marker, then destroy the key files and the sealed settings."""
    marker = codec.pack({"v": codec.FORMAT_VERSION, "repo": repo_id, "time": when.isoformat()})
    storage.put(RETIRED, marker)
    finish_retirement(storage)
