"""The storage conformance suite: what every backend promises (see `dedupe.storage.base`).

Use it by subclassing `StorageConformance` in a test module (a `Test...` class) and providing a
`storage` fixture that yields a fresh, empty backend; the class attribute `many_objects` sets how
many objects the listing test writes (over 1000, so S3 listings must paginate). Backends with real
folders set `has_folders` and override `break_folder`, which makes a folder fail to list with a
real error (the listing-error tests are skipped where a backend cannot). Backends whose writes
can leave temporaries behind override `plant_leftover`, which puts one there as an interrupted
write would (elsewhere the leftover tests check that none are ever listed).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from dedupe.errors import ObjectExists, ObjectNotFound, ShortRead, StorageError
from dedupe.storage.base import Leftover, Storage

INVALID_NAMES = [
    "",
    "/abs",
    "../up",
    "a/../b",
    "a//b",
    ".hidden",
    "data/.tmp-123",
    "-dash",
    "_under",
    "a b",
    "a\\b",
    "trailing/",
    "x" * 256,
]


def _names(storage: Storage, prefix: str = "") -> list[str]:
    return sorted(info.name for info in storage.list(prefix))


class StorageConformance:
    """Subclass with a `storage` fixture; every test starts from an empty backend."""

    many_objects = 1100
    has_folders = False

    def break_folder(self, storage: Storage, folder: str) -> bool:
        """Make `folder` (a name such as 'data/ab') fail to list with a real error; False if
        this backend cannot."""
        return False

    def plant_leftover(self, storage: Storage, name: str, data: bytes) -> bool:
        """Leave the temporary `name` ('data/ab/.tmp-1') as an interrupted write would; False if
        this backend's writes never leave one."""
        return False

    # --- reads and writes ----------------------------------------------------------------------

    @pytest.mark.parametrize("size", [0, 1, 1000, 65536 + 7, 1 << 20])
    def test_put_get_roundtrip(self, storage: Storage, size: int) -> None:
        data = os.urandom(size)
        storage.put("data/ab/obj", data)
        assert storage.get("data/ab/obj") == data
        assert storage.stat("data/ab/obj").size == size
        assert storage.exists("data/ab/obj")

    def test_put_accepts_bytearray_and_memoryview(self, storage: Storage) -> None:
        storage.put("a", bytearray(b"bytearray"))
        storage.put("b", memoryview(b"xxmemoryviewxx")[2:-2])
        assert storage.get("a") == b"bytearray"
        assert storage.get("b") == b"memoryview"

    def test_ranges(self, storage: Storage) -> None:
        data = os.urandom(300_000)
        storage.put("packs/p1", data)
        for offset, length in [(0, 1), (1, 10), (299_999, 1), (70_000, 200_000), (0, 300_000)]:
            assert storage.get("packs/p1", offset, length) == data[offset : offset + length]
        assert storage.get("packs/p1", 123_456) == data[123_456:]
        assert storage.get("packs/p1", 5, 0) == b""
        assert storage.get("packs/p1", 300_000) == b""

    def test_range_past_the_end_is_an_error(self, storage: Storage) -> None:
        storage.put("packs/p2", b"0123456789")
        with pytest.raises(StorageError):
            storage.get("packs/p2", 5, 10)
        with pytest.raises(StorageError):
            storage.get("packs/p2", 20, 1)

    def test_range_past_the_end_is_a_short_read(self, storage: Storage) -> None:
        """Typed, so the repository tells a truncated pack from a failing backend."""
        storage.put("packs/p3", b"0123456789")
        for offset, length in [(5, 10), (10, 1), (20, 1)]:
            with pytest.raises(ShortRead):
                storage.get("packs/p3", offset, length)

    def test_overwrite_replaces(self, storage: Storage) -> None:
        storage.put("locks/l", b"first version")
        storage.put("locks/l", b"second")
        assert storage.get("locks/l") == b"second"
        assert _names(storage) == ["locks/l"]

    def test_missing_objects(self, storage: Storage) -> None:
        storage.put("data/present", b"x")
        for name in ("missing", "data/missing", "nofolder/missing"):
            with pytest.raises(ObjectNotFound):
                storage.get(name)
            with pytest.raises(ObjectNotFound):
                storage.get(name, 0, 1)
            with pytest.raises(ObjectNotFound):
                storage.stat(name)
            with pytest.raises(ObjectNotFound):
                storage.delete(name)
            assert not storage.exists(name)

    def test_folder_names_are_not_objects(self, storage: Storage) -> None:
        storage.put("data/ab/obj", b"x")
        for folder in ("data", "data/ab"):
            assert not storage.exists(folder)
            with pytest.raises(ObjectNotFound):
                storage.stat(folder)
            with pytest.raises(ObjectNotFound):
                storage.get(folder)

    def test_delete(self, storage: Storage) -> None:
        storage.put("data/a", b"a")
        storage.put("data/b", b"b")
        storage.delete("data/a")
        assert not storage.exists("data/a")
        assert _names(storage) == ["data/b"]
        with pytest.raises(ObjectNotFound):
            storage.delete("data/a")

    # --- exclusive puts ------------------------------------------------------------------------

    def test_exclusive_put(self, storage: Storage) -> None:
        storage.put("snapshots/s1", b"original", exclusive=True)
        with pytest.raises(ObjectExists):
            storage.put("snapshots/s1", b"intruder", exclusive=True)
        assert storage.get("snapshots/s1") == b"original"
        assert _names(storage) == ["snapshots/s1"]  # the loser left no temporary behind

    def test_exclusive_put_race_has_one_winner(self, storage: Storage) -> None:
        writers = 8
        barrier = threading.Barrier(writers)
        outcomes: list[bytes | None] = [None] * writers

        def write(i: int) -> None:
            payload = f"writer {i} ".encode() * 1000
            barrier.wait()
            try:
                storage.put("locks/exclusive", payload, exclusive=True)
                outcomes[i] = payload
            except ObjectExists:
                pass

        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(write, range(writers)))
        winners = [p for p in outcomes if p is not None]
        assert len(winners) == 1
        assert storage.get("locks/exclusive") == winners[0]

    # --- listing -------------------------------------------------------------------------------

    def test_list_prefixes(self, storage: Storage) -> None:
        objects = {
            "config": 3,
            "data/aa/1": 10,
            "data/aa/2": 20,
            "data/ab/3": 30,
            "database/4": 40,
            "index/5": 50,
        }
        for name, size in objects.items():
            storage.put(name, b"z" * size)
        assert {i.name: i.size for i in storage.list("")} == objects
        assert _names(storage, "data/") == ["data/aa/1", "data/aa/2", "data/ab/3"]
        assert _names(storage, "data/aa/") == ["data/aa/1", "data/aa/2"]
        assert _names(storage, "index/") == ["index/5"]
        assert _names(storage, "nothing/") == []

    def test_list_many_objects(self, storage: Storage) -> None:
        names = [f"data/{i % 7:02x}/{i:06d}" for i in range(self.many_objects)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: storage.put(n, n.encode()), names))
        listed = list(storage.list("data/"))
        assert sorted(i.name for i in listed) == sorted(names)  # each exactly once
        assert all(i.size == len(i.name) for i in listed)

    def test_list_empty_storage(self, storage: Storage) -> None:
        assert _names(storage) == []
        assert _names(storage, "data/") == []

    # --- names ---------------------------------------------------------------------------------

    @pytest.mark.parametrize("name", INVALID_NAMES)
    def test_invalid_names_are_rejected(self, storage: Storage, name: str) -> None:
        calls: list[Callable[[], object]] = [
            lambda: storage.put(name, b"x"),
            lambda: storage.get(name),
            lambda: storage.stat(name),
            lambda: storage.delete(name),
            lambda: storage.exists(name),
        ]
        for call in calls:
            with pytest.raises(StorageError):
                call()
        assert _names(storage) == []

    def test_temporary_names_never_listed(self, storage: Storage) -> None:
        storage.put("data/x", b"x" * 100_000)
        storage.put("data/x", b"y" * 100)
        with pytest.raises(ObjectExists):
            storage.put("data/x", b"z", exclusive=True)
        assert _names(storage) == ["data/x"]
        assert all(not part.startswith(".") for n in _names(storage) for part in n.split("/"))

    # --- size and concurrency ------------------------------------------------------------------

    def test_large_object(self, storage: Storage) -> None:
        data = os.urandom(40 * 1024 * 1024)
        storage.put("packs/large", data)
        assert storage.stat("packs/large").size == len(data)
        assert storage.get("packs/large") == data
        middle = 17 * 1024 * 1024 + 3
        assert (
            storage.get("packs/large", middle, 5 * 1024 * 1024)
            == data[middle : middle + 5 * 1024 * 1024]
        )

    def test_parallel_mixed_operations(self, storage: Storage) -> None:
        blobs = {f"data/{i:03d}": os.urandom(50_000 + i) for i in range(48)}

        def roundtrip(name: str) -> bool:
            storage.put(name, blobs[name])
            return (
                storage.get(name) == blobs[name]
                and storage.get(name, 100, 10) == blobs[name][100:110]
            )

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(roundtrip, blobs))
        assert _names(storage, "data/") == sorted(blobs)

    def test_free_space(self, storage: Storage) -> None:
        free = storage.free_space()
        assert free is None or (isinstance(free, int) and free >= 0)

    def test_list_with_a_file_as_prefix(self, storage: Storage) -> None:
        """Where folders exist, a file where the folder should be is damage, not emptiness."""
        storage.put("config", b"c")
        if self.has_folders:
            with pytest.raises(StorageError):
                _names(storage, "config/")
        else:
            assert _names(storage, "config/") == []

    # --- listings that cannot be completed -----------------------------------------------------

    def test_listing_that_cannot_complete_raises(self, storage: Storage) -> None:
        """Never a partial list as if complete: gc deletes whatever a listing does not show."""
        storage.put("data/aa/1", b"x")
        storage.put("data/ac/2", b"y")
        storage.put("snapshots/s1", b"s")
        if not self.break_folder(storage, "data/ab"):
            pytest.skip("this backend cannot be made to fail a listing here")
        with pytest.raises(StorageError) as refused:
            list(storage.list("data/"))
        assert "data/ab" in str(refused.value)
        with pytest.raises(StorageError):
            list(storage.list(""))
        assert _names(storage, "snapshots/") == ["snapshots/s1"]  # the rest still lists

    def test_unreadable_start_folder_raises_but_a_missing_one_is_empty(
        self, storage: Storage
    ) -> None:
        storage.put("index/i1", b"i")
        if not self.break_folder(storage, "snapshots"):
            pytest.skip("this backend cannot be made to fail a listing here")
        with pytest.raises(StorageError):
            list(storage.list("snapshots/"))
        assert _names(storage, "keys/") == []  # never written: empty, not an error
        assert _names(storage, "index/") == ["index/i1"]

    # --- the storage's clock -------------------------------------------------------------------

    def test_mtime_is_the_storage_clock(self, storage: Storage) -> None:
        """stat and list tell when an object was written (locks and gc's grace period use it).
        The test servers run on this machine, so their clock is ours, give or take."""
        storage.put("locks/l1", b"lock")
        listed = {i.name: i.mtime for i in storage.list("locks/")}
        stat_mtime = storage.stat("locks/l1").mtime
        assert stat_mtime is not None and listed["locks/l1"] is not None
        assert abs(stat_mtime - time.time()) < 300
        assert abs(listed["locks/l1"] - stat_mtime) < 2

    # --- leftovers of interrupted writes ---------------------------------------------------------

    def test_max_connections(self, storage: Storage) -> None:
        assert isinstance(storage.max_connections, int) and storage.max_connections >= 1

    def test_no_leftovers_after_complete_writes(self, storage: Storage) -> None:
        storage.put("data/ab/obj", b"x" * 100_000)
        storage.put("data/ab/obj", b"y")
        storage.put("locks/l1", b"lock", exclusive=True)
        storage.delete("locks/l1")
        assert list(storage.list_leftovers()) == []

    def test_delete_leftover_refuses_what_is_no_leftover(self, storage: Storage) -> None:
        storage.put("data/ab/other", b"keep me")
        for name in ("data/ab/other", "data/ab/../x/.tmp-1", "mine/.tmp-1", "data/abc/.tmp-1"):
            with pytest.raises(StorageError):
                storage.delete_leftover(Leftover(name, 1, 0.0))
        assert storage.get("data/ab/other") == b"keep me"

    def test_planted_leftover_is_listed_and_deleted(self, storage: Storage) -> None:
        storage.put("data/ab/obj", b"object")
        if not self.plant_leftover(storage, "data/ab/.tmp-0123", b"partial"):
            pytest.skip("this backend's writes never leave temporaries behind")
        self.plant_leftover(storage, "mine/.tmp-4567", b"a user's own file")  # not our folder
        leftovers = list(storage.list_leftovers())
        assert [(t.name, t.size) for t in leftovers] == [("data/ab/.tmp-0123", 7)]
        assert 0 <= leftovers[0].age < 300
        assert _names(storage) == ["data/ab/obj"]  # never listed as an object
        storage.delete_leftover(leftovers[0])
        assert list(storage.list_leftovers()) == []
        assert storage.get("data/ab/obj") == b"object"
