"""The benchmark corpus is reproducible, nights change what they promise, and the runner works.

A benchmark that silently measures different bytes on different runs (or a runner that rots
while dedupe's CLI evolves) is worse than none, so both are pinned here at a tiny size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from benchmarks import calibrate_dump, ceilings, run, sqldump
from benchmarks.corpus import DUMP_NAME, generate, parse_size
from benchmarks.sqldump import plan_dump
from benchmarks.tools import Dedupe, probe
from benchmarks.vocab import build_pools

TINY = 12 << 20


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """relpath -> (content hash, mtime_ns) for every file under root."""
    return {
        str(p.relative_to(root)): (blake3.blake3(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny corpus at night 0 and a copy brought to night 1."""
    base = tmp_path_factory.mktemp("corpus")
    n0, n1 = base / "n0", base / "n1"
    generate(n0, TINY, 0, seed=7)
    subprocess.run(["cp", "-a", str(n0), str(n1)], check=True)
    generate(n1, TINY, 1, seed=7)
    return n0, n1


def test_parse_size() -> None:
    assert parse_size("300M") == 300 << 20
    assert parse_size("2G") == 2 << 30
    assert parse_size("1.5GiB") == 3 << 29
    assert parse_size("4096") == 4096


def test_same_seed_same_bytes(nights: tuple[Path, Path], tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, TINY, 0, seed=7)
    assert _snapshot(again) == _snapshot(nights[0])
    other = tmp_path / "other"
    generate(other, TINY, 0, seed=8)
    assert (other / DUMP_NAME).read_bytes() != (again / DUMP_NAME).read_bytes()


def test_corpus_shape(nights: tuple[Path, Path]) -> None:
    n0 = nights[0]
    total = sum(p.stat().st_size for p in n0.rglob("*") if p.is_file())
    dump = (n0 / DUMP_NAME).stat().st_size
    scans = sum(p.stat().st_size for p in (n0 / "scans").rglob("*") if p.is_file())
    assert 0.8 * TINY < total < 1.25 * TINY
    assert 0.4 < dump / total < 0.6
    assert 0.15 < scans / total < 0.35
    assert len(list(n0.rglob("*.txt"))) > 50  # many small text files


def test_night_one_changes_a_small_fraction(nights: tuple[Path, Path], tmp_path: Path) -> None:
    n0, n1 = nights
    old = (n0 / DUMP_NAME).read_bytes().splitlines()
    new = (n1 / DUMP_NAME).read_bytes().splitlines()
    old_set = set(old)
    changed = [i for i, line in enumerate(new) if line not in old_set]
    assert 0.01 < len(changed) / len(new) < 0.04  # ~1.3 % updates + inserts + appends
    assert len(new) > len(old)
    # Some changes reach the top of the dump (patients), the bulk sit near the tables' ends.
    assert changed[0] < len(new) // 10 and changed[-1] > len(new) * 9 // 10
    before, after = _snapshot(n0), _snapshot(n1)
    assert set(after) - set(before), "night 1 adds files"
    assert set(before) - set(after), "night 1 deletes files"
    assert any(after[k] != before[k] for k in set(before) & set(after) if k != DUMP_NAME)
    # Night 1 is itself deterministic.
    again = tmp_path / "n1-again"
    shutil.copytree(n0, again)
    generate(again, TINY, 1, seed=7)
    assert _snapshot(again) == after


def test_updates_cluster_in_the_newest_rows() -> None:
    pools = build_pools(3)
    plan = plan_dump(3, 8 << 20, pools)
    for table, model in sqldump.CHANGE_MODELS.items():
        n = plan.base_rows[table]
        ids = sqldump.night_update_ids(plan, table, 1)
        assert ids == sqldump.night_update_ids(plan, table, 1)  # deterministic
        assert ids != sqldump.night_update_ids(plan, table, 2)
        hot = sum(i >= n * (1 - model.hot_window) for i in ids) if model.hot_window else 0
        if model.hot_window:
            assert hot / len(ids) > 0.9, table  # today's appointments, recent invoices
            runs = sum(1 for a, b in zip(ids, ids[1:], strict=False) if b == a + 1)
            assert runs / len(ids) > 0.8, table  # in runs of consecutive rows
        else:
            assert ids[0] < n // 5 and ids[-1] > n * 4 // 5, table  # scattered patients


def test_dump_restored_share_matches_the_issue() -> None:
    """Calibration (README): ~22 % of a dump re-stored per night at 64 KiB, ~8 % at 16 KiB."""
    shares = calibrate_dump.measure(20 << 20, chunk_sizes=(64 << 10, 16 << 10), compress=False)
    at_64k, at_16k = (s.byte_share for s in shares)
    assert 0.14 < at_64k < 0.32
    assert 0.05 < at_16k < 0.13
    assert at_16k < at_64k


def test_night_cannot_go_back(nights: tuple[Path, Path]) -> None:
    with pytest.raises(SystemExit):
        generate(nights[1], TINY, 0, seed=7)


def test_sync_tree_rewrites_only_changed_files(nights: tuple[Path, Path], tmp_path: Path) -> None:
    live = tmp_path / "live"
    subprocess.run(["cp", "-a", str(nights[0]), str(live)], check=True)
    untouched = live / "scans"
    inode = {p: p.stat().st_ino for p in untouched.rglob("*") if p.is_file()}
    run.sync_tree(nights[1], live)
    assert _snapshot(live) == _snapshot(nights[1])
    kept = [p for p in inode if p.exists()]
    assert kept and all(p.stat().st_ino == inode[p] for p in kept)


def test_pipeline_ceiling_arithmetic() -> None:
    rates = {
        name: {2: 1000.0}
        for name in (
            "chunk (fastcdc)",
            "hash (blake3 keyed)",
            "zstd-3 compress dump",
            "zstd decompress dump",
            "secretbox encrypt",
            "secretbox decrypt",
        )
    }
    comp = {"rates_mb_s": rates, "compressed_ratio": {"dump": 0.5}, "argon2id_moderate_s": 0.5}
    ceil = ceilings.pipeline_ceiling(comp, {"dump": 1.0}, 1_000_000_000, threads=2)
    # Per MB: 1 + 1 + 1 + 0.5 ms -> 3.5 s for 1000 MB, plus the KDF.
    assert ceil["snapshot_s"] == pytest.approx(4.0)
    assert ceil["snapshot_mb_s"] == pytest.approx(1000 / 3.5)


def test_runner_smoke_with_dedupe(tmp_path: Path) -> None:
    reason = probe(Dedupe(), tmp_path)
    if reason:
        pytest.skip(f"dedupe CLI not usable yet: {reason}")
    out = tmp_path / "results.json"
    run.main(
        [
            "--size",
            "16M",
            "--reps",
            "1",
            "--tools",
            "dedupe",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
            "--no-ceilings",
        ]
    )
    result = json.loads(out.read_text())
    (record,) = result["runs"]
    for step in ("init", "first", "second", "rerun", "restore", "restore_dump"):
        assert record["steps"][step]["rc"] == 0, record.get("error")
        assert record["steps"][step]["wall_s"] > 0
    assert record["restore_check"]["ok"]
    med = result["medians"]["dedupe"]
    for key in (
        "first_s",
        "first_mb_s",
        "first_rss_mib",
        "repo_after_second_mib",
        "second_added_mib",
        "rerun_s",
        "restore_s",
        "restore_dump_mb_s",
    ):
        assert key in med
    assert med["second_added_mib"] < med["repo_after_first_mib"]


def test_peak_rss_counts_every_process_of_the_command() -> None:
    """A command whose helper process holds memory at the same time as itself is measured by
    the sum (rusage alone would report only the larger of the two)."""
    from benchmarks.tools import run_measured

    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', "
        '\'x = bytearray(200 << 20); x[::4096] = b"1" * len(x[::4096]); '
        "import time; time.sleep(1.5)'])\n"
        "y = bytearray(150 << 20); y[::4096] = b'1' * len(y[::4096])\n"
        "time.sleep(1.5); p.wait()\n"
    )
    m = run_measured([sys.executable, "-c", script], dict(os.environ))
    assert m.rc == 0
    assert m.max_rss_kib >= 340 << 10, m.max_rss_kib  # both at once, not max(200, 150)
