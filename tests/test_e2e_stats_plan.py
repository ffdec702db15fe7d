"""`dedupe stats` and `dedupe plan` through the real CLI on a real repository."""

from __future__ import annotations

import os
import random
import xml.etree.ElementTree as ET

import pytest

from tests.clitools import Cli, initialized_cli

NIGHTS = 6


def repo_bytes(repo: str) -> int:
    """Every object on disk except locks and the 1 MiB space reserve (which holds no data)."""
    total = 0
    for folder, _dirs, files in os.walk(repo):
        for name in files:
            path = os.path.join(folder, name)
            if name == "reserve" and folder == repo or "/locks" in path[len(repo) :]:
                continue
            total += os.path.getsize(path)
    return total


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Six nights: a base folder that never changes, a 'dump' rewritten every night and one
    new incompressible 'scan' a night."""
    tmp = tmp_path_factory.mktemp("stats")
    cli = Cli(str(tmp / "repo"), str(tmp / "cache"))
    cli("init")
    data = tmp / "data"
    (data / "scans").mkdir(parents=True)
    (data / "base.bin").write_bytes(random.Random(0).randbytes(2_000_000))
    ids = []
    for night in range(1, NIGHTS + 1):
        rng = random.Random(night)
        (data / "dump.sql").write_bytes(rng.randbytes(400_000))
        (data / "scans" / f"scan{night}.pdf").write_bytes(rng.randbytes(100_000))
        when = f"2026-03-{night + 1:02d}T23:00:00+01:00"
        ids.append(cli("snapshot", str(data), "--time", when, "--json").json()["id"])
    return cli, ids, tmp


def test_stats_matches_disk(history):
    cli, ids, _tmp = history
    stats = cli("stats", "--json").json()
    assert {"stored_bytes", "logical_bytes", "snapshots", "chunks"} <= stats.keys()
    on_disk = repo_bytes(cli.repo)
    assert abs(stats["stored_bytes"] - on_disk) <= 0.05 * on_disk
    assert stats["snapshots"] == NIGHTS
    assert [s["id"] for s in stats["per_snapshot"]] == ids
    per = stats["per_snapshot"]
    assert stats["logical_bytes"] == sum(s["logical_bytes"] for s in per)
    assert stats["chunks"] > 0 and stats["dedup_ratio"] > 2
    assert 0.9 < stats["compression_ratio"] < 1.1  # random bytes do not compress
    # Each night added its dump and scan (~500 kB); only the dump is unique to it.
    for s in per[1:]:
        assert s["added_source"] == "manifest"
        assert 480_000 < s["added_bytes"] < 560_000
    for s in per[1:-1]:
        assert 390_000 < s["unique_bytes"] < 430_000
    assert cli("stats").text.count("\n") > NIGHTS


def test_plan_json_and_chart(history):
    cli, _ids, tmp = history
    chart = tmp / "plan.svg"
    policy = ["--keep-business-days", "10", "--keep-monthly", "unlimited"]
    out = cli("plan", *policy, "--days", "90", "--json", "--chart", str(chart)).json()
    assert {"days", "peak_bytes", "final_bytes", "series", "drive_bytes", "estimate"} <= out.keys()
    assert out["days"] == 90 and len(out["series"]) == 91
    assert out["series"][0]["date"] == "2026-03-07"
    assert {"date", "bytes"} <= out["series"][0].keys()
    assert out["peak_bytes"] == max(p["bytes"] for p in out["series"])
    assert out["drive_bytes"] >= out["peak_bytes"] * 1.3
    (group,) = out["estimate"]["groups"]
    assert 480_000 < group["nightly_added_bytes"] < 560_000
    assert 0.15 < group["survival"]["1"] < 0.25  # the scan stays, the dump does not
    # Keep-everything grows by the nightly median; the policy grows by the scans and levels
    # off on the dumps, so it ends far lower.
    everything = cli("plan", "--days", "90", "--json").json()
    assert everything["final_bytes"] == pytest.approx(
        everything["series"][0]["bytes"] + 90 * group["nightly_added_bytes"], rel=0.05
    )
    assert out["final_bytes"] < everything["final_bytes"] * 0.6
    root = ET.parse(chart).getroot()
    (line,) = [e for e in root.iter() if e.get("class") == "series"]
    assert len(line.get("points").split()) == 91
    assert any("--keep-business-days 10" in "".join(t.itertext()) for t in root.iter())
    text = cli("plan", *policy, "--days", "30").text
    assert "peak:" in text and "pass --growth PCT" in text
    grown = cli("plan", *policy, "--days", "30", "--growth", "2").text
    assert "grow 2 % a month" in grown and "pass --growth PCT" not in grown


def test_plan_refuses_bad_arguments(history):
    cli, _ids, tmp = history
    assert cli("plan", "--days", "0", check=False).code == 2
    assert cli("plan", "--days", "5", "--chart", str(tmp / "x.png"), check=False).code == 2
    assert cli("plan", "--days", "5", "--growth", "lots", check=False).code == 2


def test_unique_bytes_are_what_forget_and_gc_free(tmp_path):
    cli = initialized_cli(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "base.bin").write_bytes(random.Random(0).randbytes(1_000_000))
    for night in range(1, 4):
        (data / "dump.sql").write_bytes(random.Random(night).randbytes(600_000))
        cli("snapshot", str(data), "--time", f"2026-03-0{night}T23:00:00+01:00")
    middle = cli("stats", "--json").json()["per_snapshot"][1]
    keep = cli("snapshots", "--json").json()
    others = [s["id"] for s in keep if s["id"] != middle["id"]]
    cli("hold", others[0])
    cli("hold", others[1])
    cli("forget", "--keep-last", "1")
    freed = cli("gc", "--max-unused", "0", "--json").json()["freed_bytes"]
    # gc also drops the forgotten manifest; the rewritten index is about the same size.
    assert freed == pytest.approx(middle["unique_bytes"], rel=0.05)
    after = cli("stats", "--json").json()
    assert after["snapshots"] == 2 and after["unreferenced_bytes"] == 0
