"""check reads the snapshots' trees ahead with threads (dedupe.check.checker TREES_AHEAD): on
snapshots that share most of their folders, wider than the read-ahead, it still visits each
distinct tree exactly once and finds nothing wrong. (Damaged and missing trees: test_check.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dedupe.check.checker import TREES_AHEAD, run_check
from dedupe.gc.mark import SetMarks, mark_reachable
from dedupe.repo.repository import Repository
from dedupe.storage.faults import StorageWrapper
from tests.test_gc import T0, new_repo, take_snapshot

pytestmark = pytest.mark.usefixtures("cheap_kdf")


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


class _ParallelDisk(StorageWrapper):
    """A local folder that says it takes parallel requests, as SFTP and S3 do: check then
    reads trees ahead with threads (on a real local disk it does not)."""

    max_connections = 4


@pytest.mark.parametrize("parallel", [False, True])
def test_each_distinct_tree_is_counted_once_across_snapshots(tmp_path, parallel):
    repo, snaps = _nights(tmp_path, folders=3 * TREES_AHEAD, nights=4)
    if parallel:
        repo = Repository(_ParallelDisk(repo.storage), repo.key, repo.settings, "k")
    report = run_check(repo)
    assert report.ok, report.errors
    marks = SetMarks()
    mark_reachable(repo, [s.tree for s in snaps], marks)
    assert report.trees == len(marks.trees) > 6 * TREES_AHEAD
