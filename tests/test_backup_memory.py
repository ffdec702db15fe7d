"""The walk's collector settings (dedupe.backup.memory.fewer_collections): in force only inside,
undone on exit (also after an error), and reference cycles made inside are still collected."""

from __future__ import annotations

import gc
import weakref

import pytest

from dedupe.backup.memory import WALK_GC_THRESHOLD, fewer_collections


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


def test_settings_apply_inside_and_are_undone() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with fewer_collections():
        assert gc.get_threshold()[0] >= WALK_GC_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > frozen_before
        assert gc.isenabled()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


def test_undone_after_an_error() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("walk failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


def test_a_cycle_made_inside_is_collected() -> None:
    with fewer_collections():
        ref = weakref.ref(_Cyclic())
        assert ref() is not None  # only the cycle holds it
        gc.collect()
        assert ref() is None
