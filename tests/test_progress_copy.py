"""`dedupe copy` on a real terminal: the bar knows what is to come (bytes and snapshots), shows
%, the rate and an ETA in the units every summary uses, also on a pty that reports 0 columns."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.clitools import Cli, initialized_cli, run_on_pty


def _two_snapshots(tmp_path: Path) -> Cli:
    src = initialized_cli(tmp_path / "src")
    data = tmp_path / "data"
    data.mkdir()
    (data / "scan.pdf").write_bytes(os.urandom(3 << 20))
    src("snapshot", str(data))
    (data / "letter.docx").write_bytes(os.urandom(2 << 20))
    src("snapshot", str(data))
    return src


def _dest(tmp_path: Path, src: Cli, *init: str) -> Cli:
    """A destination with the source's password (copy uses it when no DEDUPE_TO_* is set)."""
    dest = Cli(str(tmp_path / "dest"), str(tmp_path / "dest-cache"))
    dest("init", *init)
    return dest


@pytest.mark.parametrize("columns, rows", [(0, 0), (120, 40)])
def test_copy_bar_shows_the_total_percent_and_eta(tmp_path, columns, rows):
    src = _two_snapshots(tmp_path)
    dest = _dest(tmp_path, src, "--copy-chunker-params-from", src.repo)
    code, out, shown = run_on_pty(src, ["copy", "--to", dest.repo], columns, rows)
    assert code == 0, shown
    assert out.count("copied snapshot ") == 2
    # The first frame already knows the whole: 0 % of about 5.3 MB (the files and their trees),
    # and two snapshots to go.
    first = re.search(r"copy:\s+0% .*?0 B of (\d+\.\d+) MB, .*?/s, ETA [^,]+, 0/2 snapshots", shown)
    assert first is not None, shown
    assert 5.24 <= float(first.group(1)) < 5.46
    assert "MiB" not in shown
    # A second copy has nothing left to read and draws no bar: the destination has both.
    code, out, shown = run_on_pty(src, ["copy", "--to", dest.repo], columns, rows)
    assert code == 0 and "0 snapshot(s) copied, 2 already there" in shown
    assert "copy: " not in shown


def test_copy_bar_without_shared_ids_counts_bytes_and_snapshots(tmp_path):
    # Unrelated keys: re-chunking reads what an earlier copy does not pair up, which only the
    # copy finds out; the bar shows what was read, the rate and the snapshots, with no %.
    src = _two_snapshots(tmp_path)
    dest = _dest(tmp_path, src)
    code, _out, shown = run_on_pty(src, ["copy", "--to", dest.repo], 0, 0)
    assert code == 0, shown
    assert re.search(r"copy: \d+(\.\d)? [KMG]?i?B, .*?/s, 0/2 snapshots", shown), shown
    assert "%" not in shown.split("snapshot(s) copied")[0]
