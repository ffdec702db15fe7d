"""The free-space warning before a snapshot (dedupe.backup.space) writes sizes as the rest of the
package does: decimal units through dedupe.units, never a formatter of its own."""

from __future__ import annotations

import os

from dedupe.backup import space
from dedupe.repo.repository import Repository
from dedupe.storage.faults import OutOfSpaceAfter
from dedupe.storage.local import LocalStorage
from tests.support import PASSWORD


def test_low_space_warning_uses_the_packages_decimal_units(tmp_path, cheap_kdf):
    (tmp_path / "repo").mkdir()
    repo = Repository.init(LocalStorage(str(tmp_path / "repo")), PASSWORD.encode(), 65536, "zstd:3")
    src = tmp_path / "src"
    src.mkdir()
    (src / "scan.bin").write_bytes(os.urandom(3_000_000))
    small = Repository(OutOfSpaceAfter(repo.storage, 2_000_000), repo.key, repo.settings, "k")
    warnings: list[str] = []
    space.warn_if_low_space(small, [os.fsencode(src)], False, warnings.append)
    assert len(warnings) == 1
    # 2,000,000 bytes free; the estimate is the 3 MB file plus the 4 MiB floor (7.19 MB).
    assert "has 2 MB free" in warnings[0] and "about 7.19 MB" in warnings[0], warnings[0]
    assert "MiB" not in warnings[0]


def test_source_size_counted_beside_the_unlock_warns_once_counted(tmp_path, cheap_kdf):
    """The snapshot command counts the sources while the key is derived (space.SourceSize) and
    does not wait for the count: the warning comes from the counting thread, before
    `result()` returns."""
    (tmp_path / "repo").mkdir()
    repo = Repository.init(LocalStorage(str(tmp_path / "repo")), PASSWORD.encode(), 65536, "zstd:3")
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "scan.bin").write_bytes(os.urandom(2_000_000))
    (src / "notes.txt").write_bytes(os.urandom(1_000_000))
    paths = [os.fsencode(src)]
    small = Repository(OutOfSpaceAfter(repo.storage, 2_000_000), repo.key, repo.settings, "k")
    warnings: list[str] = []
    counted = space.SourceSize(paths)
    space.warn_if_low_space(small, paths, False, warnings.append, counted)
    assert counted.result() == 3_000_000
    assert len(warnings) == 1 and "about 7.19 MB" in warnings[0], warnings
    # Room enough (the test disk): no warning, whether or not the count was still needed.
    warnings.clear()
    counted = space.SourceSize(paths)
    space.warn_if_low_space(repo, paths, False, warnings.append, counted)
    counted.result()
    assert warnings == []
