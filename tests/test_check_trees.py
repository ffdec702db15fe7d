"""check on snapshots that share most of their folders visits each distinct tree exactly once
(as many as gc's mark reaches) and finds nothing wrong. (Damaged and missing trees: test_check.)
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dedupe.check.checker import run_check
from dedupe.gc.mark import SetMarks, mark_reachable
from tests.test_gc import T0, new_repo, take_snapshot

pytestmark = pytest.mark.usefixtures("cheap_kdf")
WIDE = 192  # folders: wider than any read-ahead window a walk might use


def _nights(tmp_path, folders: int, nights: int):
    repo = new_repo(str(tmp_path / "repo"))
    src = tmp_path / "src"
    for i in range(folders):
        (src / f"patient{i:03d}" / "visits").mkdir(parents=True)
        (src / f"patient{i:03d}" / "visits" / "note.txt").write_text(f"patient {i}\n")
    snaps = []
    for night in range(nights):
        # One patient's folder changes a night: the other folders' trees are shared.
        (src / f"patient{night:03d}" / "visits" / "note.txt").write_text(f"night {night}\n")
        snaps.append(take_snapshot(repo, str(src), T0 + timedelta(days=night)))
    return repo, snaps


def test_each_distinct_tree_is_counted_once_across_snapshots(tmp_path):
    repo, snaps = _nights(tmp_path, folders=WIDE, nights=4)
    report = run_check(repo)
    assert report.ok, report.errors
    marks = SetMarks()
    mark_reachable(repo, [s.tree for s in snaps], marks)
    assert report.trees == len(marks.trees) > 2 * WIDE
