"""An open repository: unlocked keys, settings, the index, blob reads and snapshot manifests.

`Repository.init` creates one; `Repository.open` unlocks one. Writing blobs goes through
`dedupe.repo.writer.BlobWriter`; snapshot manifests are stored here as sealed bytes whose
structure belongs to `dedupe.model.snapshot`. Which index files count and how the chunk index is
loaded from them is `dedupe.repo.indexload`; object names are `dedupe.repo.names` (re-exported
here for the callers that import them from this module).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from dedupe.cachedir import default_cache_dir
from dedupe.chunker import Chunker, ChunkerParams
from dedupe.crypto import keys
from dedupe.errors import (
    DamageError,
    DedupeError,
    FormatError,
    NoRepository,
    ObjectNotFound,
    OutOfSpace,
    ShortRead,
    UsageError,
    WrongPassword,
)
from dedupe.repo import config as config_mod
from dedupe.repo import journal, keyshare, reserve
from dedupe.repo import lock as lock_mod
from dedupe.repo import retire as retire_mod
from dedupe.repo.blob import BlobCodec, parse_compression
from dedupe.repo.index import ChunkIndex, Location
from dedupe.repo.indexload import IndexFiles
from dedupe.repo.names import GC_PENDING as GC_PENDING
from dedupe.repo.names import pack_id_from_name as pack_id_from_name
from dedupe.repo.names import pack_name as pack_name
from dedupe.repo.pack import BlobEntry
from dedupe.storage.base import Storage

PasswordSource = Callable[[], bytes]


class Repository:
    """An unlocked repository."""

    def __init__(
        self, storage: Storage, key: keys.MasterKey, settings: config_mod.Settings, key_name: str
    ) -> None:
        self.storage = storage
        self.key = key
        self.settings = settings
        self.key_name = key_name
        self.sealer = key.sealer()
        self.hash = key.id_hasher()
        try:
            level = parse_compression(settings.compression)
        except ValueError as exc:
            raise FormatError(f"repository config: {exc}") from None
        self.blobs = BlobCodec(self.sealer, self.hash, level)
        self._index: ChunkIndex | None = None
        # Which index files count, as this process saw them when it loaded the index.
        self.index_files = IndexFiles(storage, self.sealer, key, settings.repo_id)
        # Where the local index cache lives (None: no cache); the files cache's folder.
        self.cache_dir: str | None = default_cache_dir()

    # --- creation and unlocking ------------------------------------------------------------

    @classmethod
    def init(
        cls,
        storage: Storage,
        password: bytes,
        chunk_avg: int,
        compression: str,
        template: Repository | None = None,
        share_key: bool = False,
    ) -> Repository:
        """Create a new repository (the storage root must be empty of a repository).

        With `template` (`init --copy-chunker-params-from`), the new repository shares the
        template's id key, chunker seed, chunk sizes and pack size, so blobs have the same ids
        in both and `copy` between them moves only missing blobs; the encryption key, the
        repository id and the password are its own (`chunk_avg` is then ignored). With
        `share_key` too (`init --same-key-as`), it also shares the encryption key: one key
        export or paper key opens both (`dedupe.repo.keyshare`); its id and password stay its
        own."""
        if storage.exists("config"):
            raise UsageError(f"a repository already exists at {storage.url}")
        try:
            params = ChunkerParams.for_average(chunk_avg).validate()
            parse_compression(compression)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        repo_id = secrets.token_bytes(16)
        key = keys.MasterKey.generate(repo_id)
        settings = config_mod.Settings(repo_id, params, compression)
        if template is not None:
            key = dataclasses.replace(
                key, id_key=template.key.id_key, chunker_seed=template.key.chunker_seed
            )
            if share_key:
                key = keyshare.shared_key(template.key, repo_id)
            settings = config_mod.carried(settings, template.settings)
        key_name = f"keys/{secrets.token_hex(8)}"
        # Key file first: a repository "exists" once config is there, and must then be openable.
        storage.put(key_name, keys.encode_key_file(key, password), exclusive=True)
        storage.put("config", config_mod.encode_config(settings, key.sealer()), exclusive=True)
        reserve.ensure(storage)  # lets forget and gc start on a disk that later fills up
        return cls(storage, key, settings, key_name)

    @classmethod
    def open(cls, storage: Storage, password: PasswordSource) -> Repository:
        """Unlock the repository with the password; NoRepository, WrongPassword or damage.

        Key files are tried cheapest first (Argon2id ops x memory, read from each file's
        plaintext envelope), after the one that opened last on this machine (its name alone is
        remembered in the cache folder): a planted key file asking for the maximum cost is then
        never derived when the right one opens, and a key file that cannot be decoded (damaged,
        or of an unknown format version) is skipped, never a lock-out."""
        try:
            raw_config = storage.get("config")
        except ObjectNotFound:
            raise NoRepository(f"there is no dedupe repository at {storage.url}") from None
        retire_mod.refuse_retired(storage)
        repo_id, box = config_mod.read_envelope(raw_config)
        key_names = [info.name for info in storage.list("keys/")]
        if not key_names:
            raise WrongPassword(f"the repository at {storage.url} has no key file")
        hint_path = os.path.join(default_cache_dir(), repo_id.hex(), "last-key-file")
        try:
            with open(hint_path, encoding="ascii") as hint_file:
                last_name = hint_file.read(100).strip()
        except (OSError, ValueError):
            last_name = ""
        candidates: list[tuple[bool, int, str, keys.KeyFile]] = []
        unknown: list[str] = []
        for name in key_names:
            try:
                key_file = keys.decode_key_file(storage.get(name))
            except keys.UnknownKeyVersion:
                unknown.append(name)
                continue
            except (FormatError, ObjectNotFound):
                continue
            candidates.append((name != last_name, key_file.cost, name, key_file))
        candidates.sort(key=lambda c: c[:3])
        secret = password() if candidates else b""
        opened: tuple[keys.MasterKey, str] | None = None
        for _not_last, _cost, name, key_file in candidates:
            try:
                opened = (key_file.unlock(secret), name)
                break
            except keys.UnknownKeyVersion:
                unknown.append(name)
            except (WrongPassword, FormatError):
                continue
        if opened is None:
            newer = ""
            if unknown:
                newer = (
                    f"; {len(unknown)} key file(s) ({', '.join(sorted(unknown))}) have an "
                    "unknown format version, maybe written by a newer dedupe: upgrade dedupe "
                    "if the password is right"
                )
            raise WrongPassword(
                f"wrong password: no key file of this repository opens with it{newer}"
            )
        key, key_name = opened
        if key.repo_id != repo_id:
            raise DamageError("the key file belongs to another repository")
        settings = config_mod.decode_settings(box, repo_id, key.sealer())
        if key_name != last_name:
            # Best effort, and only the name: nothing secret is written to the cache folder.
            try:
                os.makedirs(os.path.dirname(hint_path), exist_ok=True)
                with open(f"{hint_path}.{os.getpid()}.tmp", "w", encoding="ascii") as hint_file:
                    hint_file.write(key_name)
                os.replace(f"{hint_path}.{os.getpid()}.tmp", hint_path)
            except OSError:
                pass  # an unwritable cache only costs the order of the next open
        return cls(storage, key, settings, key_name)

    def change_password(self, new_password: bytes) -> str:
        """Write a key file for the new password, then delete the old one, then journal the
        change (a `key` entry naming the old and new key files). Returns the new name."""
        new_name = f"keys/{secrets.token_hex(8)}"
        # The new key file is durable before the old one goes: an interruption leaves a
        # repository that opens with the old or the new password, never neither.
        self.storage.put(new_name, keys.encode_key_file(self.key, new_password), exclusive=True)
        try:
            self.storage.delete(self.key_name)
        except ObjectNotFound:
            pass
        old_name, self.key_name = self.key_name, new_name
        entry = journal.new_entry(
            "key",
            "dedupe key passwd",
            reason="password changed",
            details={"old_key_file": old_name, "new_key_file": new_name},
        )
        try:
            journal.append(self, entry)
        except DedupeError as exc:
            raise DedupeError(
                f"the password was changed (the new key file is {new_name}), but the journal "
                f"entry recording it could not be written: {exc}"
            ) from None
        return new_name

    def retire(self, when: datetime) -> None:
        """Make this repository unreadable on purpose (`dedupe retire`); see `repo.retire`."""
        retire_mod.retire(self.storage, self.settings.repo_id, when)

    def chunker(self) -> Chunker:
        return Chunker(self.settings.chunker, self.key.chunker_seed)

    # --- locks -------------------------------------------------------------------------------

    def lock(self, exclusive: bool, wait: float = 0.0, frees_space: bool = False) -> lock_mod.Lock:
        """Take a lock. `frees_space` (forget, gc) may spend the reserve on a full disk."""
        try:
            return lock_mod.acquire(self.storage, self.sealer, exclusive, wait)
        except OutOfSpace:
            # Only commands about to free space may spend the reserve; `hold` spending it
            # would leave forget and gc unable to take their lock on a full disk.
            if not (exclusive and frees_space) or not reserve.release(self.storage):
                raise
            return lock_mod.acquire(self.storage, self.sealer, exclusive, wait)

    # --- index -------------------------------------------------------------------------------

    @property
    def index(self) -> ChunkIndex:
        if self._index is None:
            self._index = self.load_index()
        return self._index

    def forget_index(self) -> None:
        """Drop the index held in memory: the next reader loads it again from the index files
        (gc and repair call this once they have replaced them)."""
        self._index = None

    @contextlib.contextmanager
    def reading_through(self, index: ChunkIndex) -> Iterator[None]:
        """Within the block, blobs are read through `index` instead of the repository's own;
        afterwards the index is forgotten (`forget_index`). gc reads the snapshots' trees this
        way, through its entry table: it also holds the packs no index file names yet."""
        self._index = index
        try:
            yield
        finally:
            self._index = None

    def load_index(self) -> ChunkIndex:
        """The union of the current index files (superseded ones, left by an interrupted gc,
        and ones below the floor, put back from an old copy, are skipped): the local cache plus
        the files newer than it when a cache may be used (`dedupe.repo.indexcache`), else every
        file decoded into memory."""
        return self.index_files.load(self.cache_dir)

    @property
    def index_names(self) -> list[str]:
        """The current index files (and the ones this process wrote since loading)."""
        return self.index_files.names

    @property
    def index_errors(self) -> list[str]:
        """What was wrong with the damaged index files met by the last load."""
        return self.index_files.errors

    @property
    def index_floor(self) -> int:
        """The index floor seen when the index was loaded: the generation this process writes
        its index files with (`dedupe.repo.index.judge`)."""
        return self.index_files.floor

    def write_index(
        self, packs: list[tuple[bytes, list[BlobEntry]]], supersedes: Sequence[str] = ()
    ) -> tuple[str, int]:
        """Write one index file naming `packs` (which must already be durable): (name, size).

        Its generation is the floor seen when the index was loaded: if a gc raised the floor
        since, the file counts for nothing, and `index_changed_since_load` tells the snapshot
        before it writes a manifest that would reference it."""
        _ = self.index  # the floor is known once the index is loaded
        return self.index_files.write(packs, supersedes)

    def current_index_floor(self) -> int:
        """The index floor now: at least `index_floor`, higher once a gc (or `repair index`)
        has replaced the whole index since this process loaded it. Only files not listed at
        load time are decoded."""
        _ = self.index
        return self.index_files.current_floor()

    def index_changed_since_load(self) -> bool:
        """True if a gc or repair wrote an index file since the index was loaded: it raised
        the floor, or (a gc that only repacked) wrote a file of a higher generation than any
        writer of this floor uses. Either way it may have deleted a blob this process took as
        present, so a snapshot must not commit a manifest now."""
        _ = self.index
        return self.index_files.changed_since_load()

    # --- blobs -------------------------------------------------------------------------------

    def locate(self, blob_id: bytes) -> Location:
        loc = self.index.lookup(blob_id)
        if loc is None:
            raise DamageError(f"blob {blob_id.hex()[:16]} is missing from the index")
        return loc

    def read_blob(self, blob_id: bytes) -> bytes:
        """The verified plaintext of a blob (DamageError if missing or damaged)."""
        loc = self.locate(blob_id)
        try:
            sealed = self.storage.get(pack_name(loc.pack_id), loc.offset, loc.length)
        except ObjectNotFound:
            raise DamageError(f"pack {loc.pack_id.hex()[:16]} is missing") from None
        except ShortRead:
            raise DamageError(f"pack {loc.pack_id.hex()[:16]} is truncated") from None
        return self.blobs.decode(sealed, blob_id, loc.raw_length)

    def read_blob_run(self, run: list[tuple[bytes, Location]]) -> list[bytes | DamageError]:
        """Blobs that lie close together in one pack, read with one request and verified one
        by one. Each result is the plaintext or the DamageError for that blob alone, so a
        damaged blob never fails its neighbours (which may belong to other files)."""
        first = run[0][1]
        start = first.offset
        end = max(loc.offset + loc.length for _, loc in run)
        try:
            span = self.storage.get(pack_name(first.pack_id), start, end - start)
        except ObjectNotFound:
            return [DamageError(f"pack {first.pack_id.hex()[:16]} is missing")] * len(run)
        except ShortRead:
            # Truncated pack: fall back to reading blob by blob, so the intact ones survive.
            return [self.read_blob_or_error(blob_id) for blob_id, _loc in run]
        view = memoryview(span)
        out: list[bytes | DamageError] = []
        for blob_id, loc in run:
            piece = view[loc.offset - start : loc.offset - start + loc.length]
            try:
                out.append(self.blobs.decode(piece, blob_id, loc.raw_length))
            except DamageError as exc:
                out.append(exc)
        return out

    def read_blob_or_error(self, blob_id: bytes) -> bytes | DamageError:
        """`read_blob`, with damage returned instead of raised (for readers that report it
        at the file it belongs to, like the restorer's prefetch)."""
        try:
            return self.read_blob(blob_id)
        except DamageError as exc:
            return exc

    # --- snapshot manifests (sealed bytes; structure in dedupe.model.snapshot) --------------

    def snapshot_names(self) -> list[str]:
        names = []
        for info in self.storage.list("snapshots/"):
            name = info.name.split("/")[-1]
            if len(name) == 64:
                names.append(name)
        return names

    def load_manifest(self, snapshot_id: str) -> bytes:
        try:
            data = self.storage.get(f"snapshots/{snapshot_id}")
        except ObjectNotFound:
            raise UsageError(f"no snapshot {snapshot_id}") from None
        return self.sealer.open(data, f"snapshot {snapshot_id[:8]}")

    def save_manifest(self, snapshot_id: str, plaintext: bytes) -> int:
        data = self.sealer.seal(plaintext)
        self.storage.put(f"snapshots/{snapshot_id}", data)
        return len(data)

    def delete_manifest(self, snapshot_id: str) -> None:
        self.storage.delete(f"snapshots/{snapshot_id}")
