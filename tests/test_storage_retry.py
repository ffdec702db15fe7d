"""RetryingStorage and the fault-injecting wrappers, on the in-memory and local backends.

(The conformance suite also runs through `RetryingStorage` over faulty storage: see
`tests/test_storage.py::TestRetryingFaultyMemory`.)
"""

from __future__ import annotations

from typing import Any

import pytest

from dedupe.errors import (
    ObjectExists,
    ObjectNotFound,
    OutOfSpace,
    StorageError,
    TransientStorageError,
)
from dedupe.storage.faults import (
    DropConnection,
    FailNthCall,
    FlippedByte,
    InterruptedList,
    OutOfSpaceAfter,
    RecordingStorage,
    TruncatedRead,
)
from dedupe.storage.local import LocalStorage
from dedupe.storage.memory import MemoryStorage
from dedupe.storage.retry import RetryingStorage


def _retrying(inner: Any, **kwargs: Any) -> RetryingStorage:
    return RetryingStorage(inner, base_delay=0.001, sleep=lambda _s: None, **kwargs)


def test_retry_rereads_after_a_dropped_get() -> None:
    memory = MemoryStorage()
    memory.put("p", b"0123456789")
    faulty = DropConnection(memory, "get", n=1, times=3)
    assert _retrying(faulty).get("p", 2, 5) == b"23456"
    assert faulty.calls == 4


@pytest.mark.parametrize(
    "error", [StorageError("permanent"), ObjectNotFound("gone"), OutOfSpace("full")]
)
def test_retry_leaves_non_transient_errors_alone(error: StorageError) -> None:
    faulty = FailNthCall(MemoryStorage(), "stat", error=error)
    with pytest.raises(type(error)):
        _retrying(faulty).stat("x")
    assert faulty.calls == 1


def test_retry_gives_up_after_attempts_and_time() -> None:
    faulty = DropConnection(MemoryStorage(), "exists", times=100)
    with pytest.raises(TransientStorageError, match="gave up after 3 attempts"):
        _retrying(faulty, attempts=3).exists("x")
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bounded = RetryingStorage(
        DropConnection(MemoryStorage(), "exists", times=100),
        attempts=100, base_delay=1.0, max_delay=4.0, max_elapsed=20.0,
        sleep=sleep, clock=lambda: now[0],
    )  # fmt: skip
    with pytest.raises(TransientStorageError):
        bounded.exists("x")
    assert now[0] <= 20.0


def test_retry_resolves_lost_replies() -> None:
    memory = MemoryStorage()
    lost_put = FailNthCall(memory, "put", after=True)  # stored, but the reply never came
    _retrying(lost_put).put("snap", b"mine", exclusive=True)
    assert memory.get("snap") == b"mine"
    memory.put("other", b"theirs")
    with pytest.raises(ObjectExists):  # someone else's bytes are never taken for ours
        _retrying(FailNthCall(memory, "put", after=True)).put("other", b"mine", exclusive=True)
    _retrying(FailNthCall(memory, "delete", after=True)).delete("snap")
    assert not memory.exists("snap")
    with pytest.raises(ObjectNotFound):
        _retrying(memory).delete("snap")


def test_retry_restarts_an_interrupted_listing_without_duplicates() -> None:
    memory = MemoryStorage()
    for i in range(10):
        memory.put(f"data/{i}", b"x")
    listed = [i.name for i in _retrying(InterruptedList(memory, after=4, times=2)).list("data/")]
    assert sorted(listed) == [f"data/{i}" for i in range(10)]


def test_a_failed_put_stores_nothing() -> None:
    memory = MemoryStorage()
    with pytest.raises(TransientStorageError):
        DropConnection(memory, "put").put("data/x", b"partial?")
    assert not memory.exists("data/x") and list(memory.list()) == []


def test_damaged_reads() -> None:
    memory = MemoryStorage()
    memory.put("p", b"abcdef")
    assert TruncatedRead(memory, drop=2).get("p") == b"abcd"
    flipped = FlippedByte(memory, n=2)
    assert flipped.get("p") == b"abcdef"
    assert flipped.get("p") == b"abcdeg"
    assert flipped.get("p") == b"abcdef"


def test_out_of_space_after_limit() -> None:
    disk = OutOfSpaceAfter(MemoryStorage(), limit=100)
    disk.put("a", b"x" * 60)
    with pytest.raises(OutOfSpace):
        disk.put("b", b"x" * 50)
    assert not disk.exists("b")
    assert disk.free_space() == 40
    disk.delete("a")
    disk.put("b", b"x" * 90)
    assert disk.free_space() == 10


def test_recording_storage_and_delegation(tmp_path: Any) -> None:
    local = LocalStorage(str(tmp_path))
    recorder = RecordingStorage(local)
    recorder.put("a", b"1")
    assert recorder.get("a") == b"1"
    assert recorder.calls == [("put", "a"), ("get", "a")]
    assert list(recorder.list_temporary()) == []  # extras of the backend pass through
    assert _retrying(recorder).root == local.root
