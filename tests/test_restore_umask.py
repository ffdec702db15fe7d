"""A restore gives files and folders the snapshot's permission bits whatever the umask, and never
changes the process's umask (it is process-wide: the web page restores in a thread beside others,
and a restore that cleared it once left it cleared for every file created after)."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedupe import platform
from dedupe.repo.manifests import load_all
from dedupe.restore.restorer import Restorer
from tests.clitools import initialized_cli
from tests.support import open_repo

MODES = {"open.txt": 0o666, "group.txt": 0o640, "tool.sh": 0o775, "private.txt": 0o600}


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_modes_are_the_snapshots_and_the_umask_is_never_touched(
    tmp_path: Path, cheap_kdf: None, umask_027: None
) -> None:
    cli = initialized_cli(tmp_path)
    source = tmp_path / "src"
    (source / "shared").mkdir(parents=True)
    os.chmod(source / "shared", 0o777)
    for name, mode in MODES.items():
        (source / "shared" / name).write_text(name)
        os.chmod(source / "shared" / name, mode)
    cli("snapshot", str(source))
    repo = open_repo(cli.repo)
    (snap,) = load_all(repo)

    seen: list[int | None] = []
    stop = threading.Event()

    def watch() -> None:  # what another thread of the process sees while the restore runs
        while not stop.is_set():
            seen.append(platform.current_umask())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        Restorer(repo, str(tmp_path / "out")).restore(snap.tree)
    finally:
        stop.set()
        watcher.join()
    restored = tmp_path / "out" / str(source).lstrip("/") / "shared"
    assert stat.S_IMODE(os.stat(restored).st_mode) == 0o777
    for name, mode in MODES.items():
        assert stat.S_IMODE(os.stat(restored / name).st_mode) == mode, name
    assert platform.current_umask() == 0o027
    assert seen and set(seen) == {0o027}


def test_the_umask_is_read_from_proc_without_setting_it() -> None:
    assert platform.parse_status_umask(b"Name:\tpython3\nUmask:\t0022\nState:\tR\n") == 0o022
    assert platform.parse_status_umask(b"Name:\tpython3\nState:\tR\n") is None
    assert platform.current_umask(system="darwin") is None  # macOS: unknown, so always fchmod
    old = os.umask(0o077)
    try:
        assert platform.current_umask() == 0o077
    finally:
        os.umask(old)
