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
    # The peak is the largest forecast day; today (day 0) is not a forecast.
    assert out["peak_bytes"] == max(p["bytes"] for p in out["series"][1:])
    assert out["drive_bytes"] == out["recommended_drive_bytes"] >= out["needed_bytes"]
    assert out["margin_source"] == "measured on replays" and out["margin"] > 1
    assert out["needed_bytes"] >= out["peak_bytes"]
    assert out["drive_full_date"] is None
    assert all(p["low_bytes"] <= p["bytes"] <= p["high_bytes"] for p in out["series"])
    (group,) = out["estimate"]["groups"]
    assert 480_000 < group["nightly_added_bytes"] < 560_000
    assert 0.15 < group["survival"]["1"] < 0.25  # the scan stays, the dump does not
    assert group["standing"]["30"] == 1.0  # the base and the scans stay
    # Keep-everything grows by the nightly mean; the policy grows by the scans and levels
    # off on the dumps, so it ends far lower.
    everything = cli("plan", "--days", "90", "--json").json()
    assert everything["final_bytes"] == pytest.approx(
        everything["series"][0]["bytes"] + 90 * group["nightly_added_bytes"], rel=0.05
    )
    assert out["final_bytes"] < everything["final_bytes"] * 0.6
    root = ET.parse(chart).getroot()
    words = ["".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "Backup disk, next 3 months, policy: 10 business days + month ends" in words
    for part in ("series", "past", "band", "drive"):
        assert [e for e in root.iter() if e.get("class") == part], part
    text = cli("plan", *policy, "--days", "30").text
    first = text.splitlines()[0]
    assert first.startswith("Buy at least a 1 GB drive: the backups need about ")
    assert first.endswith(" at their peak, around April 2026.")
    assert text.index("how this was estimated:") > text.index("peak:")
    (drive_line,) = [line for line in text.splitlines() if line.startswith("  drive:")]
    assert " % measured on replays: " in drive_line and "plan with a margin of " in drive_line
    given = cli("plan", *policy, "--days", "30", "--margin", "30", "--json").json()
    assert given["margin"] == 1.3 and given["margin_source"] == "given"
    assert "pass --growth PCT" in text and "MiB" not in text
    assert "<- peak" not in text and "<- peak" in cli("plan", *policy, "--days", "30", "-v").text
    grown = cli("plan", *policy, "--days", "30", "--growth", "2").text
    assert "grow 2 % a month" in grown and "pass --growth PCT" not in grown


def test_plan_refuses_bad_arguments(history):
    cli, _ids, tmp = history
    assert cli("plan", "--days", "0", check=False).code == 2
    assert cli("plan", "--days", "5", "--chart", str(tmp / "x.gif"), check=False).code == 2
    assert cli("plan", "--days", "5", "--growth", "lots", check=False).code == 2
    bad = cli("plan", "--days", "5", "--drive-size", "two terabytes", check=False)
    assert bad.code == 2
    assert "cannot read the drive size 'two terabytes'" in bad.err and "e.g. 2T" in bad.err
    assert "Traceback" not in bad.err


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


BASE = 3_000_000
NIGHT = 100_000


@pytest.fixture(scope="module")
def base_history(tmp_path_factory):
    """The issue's history, scaled down ten times: 20 nights over a 3 MB base folder, each
    night adding 100 kB that is gone the next night."""
    tmp = tmp_path_factory.mktemp("base")
    cli = Cli(str(tmp / "repo"), str(tmp / "cache"))
    cli("init")
    data = tmp / "data"
    data.mkdir()
    (data / "base.bin").write_bytes(random.Random(0).randbytes(BASE))
    for night in range(20):
        if night:
            (data / f"night{night - 1}.bin").unlink()
        (data / f"night{night}.bin").write_bytes(random.Random(night + 1).randbytes(NIGHT))
        cli("snapshot", str(data), "--time", f"2026-03-{night + 2:02d}T23:00:00+01:00")
    return cli


PRACTICE = ["--keep-business-days", "10", "--keep-monthly", "unlimited"]


def test_plan_never_forecasts_the_shared_base_away(base_history):
    """Issue 15: the first version forecast less than the base every kept snapshot references.
    Every forecast day holds at least the base plus each kept snapshot's own night."""
    out = base_history("plan", *PRACTICE, "--days", "365", "--json").json()
    assert out["series"][-1]["snapshots"] == 23  # 10 business days + 12 month ends + March's
    for point in out["series"][1:]:
        referenced = BASE + point["snapshots"] * NIGHT
        assert referenced <= point["bytes"] <= referenced * 1.1 + NIGHT
    assert out["final_bytes"] >= BASE + 23 * NIGHT


def test_plan_says_when_the_drive_fills(base_history):
    out = base_history("plan", *PRACTICE, "--days", "365", "--json").json()
    today = out["series"][0]["bytes"]
    sizes = [p["bytes"] for p in out["series"]]
    # A drive just above the smallest forecast day that the year's last month exceeds.
    target = sizes[-1] - 1
    first = next(i for i, size in enumerate(sizes) if size >= target)
    assert 0 < first <= 365
    drive = f"{target / 1e6}M"  # decimal megabytes, as drives are labelled
    filled = base_history("plan", *PRACTICE, "--days", "365", "--drive-size", drive, "--json")
    filled = filled.json()
    assert filled["drive_bytes"] == int(target)
    assert filled["drive_full_date"] == out["series"][first]["date"]
    words = base_history("plan", *PRACTICE, "--days", "365", "--drive-size", drive).text
    assert words.startswith(f"A {target / 1e6:.3g} MB drive fills around ")
    assert f"({out['series'][first]['date']})" in words.splitlines()[0]
    roomy = base_history("plan", *PRACTICE, "--days", "365", "--drive-size", "2T", "--json")
    assert roomy.json()["drive_bytes"] == 2 * 10**12
    assert roomy.json()["drive_full_date"] is None
    text = base_history("plan", *PRACTICE, "--days", "365", "--drive-size", "2T").text
    assert text.startswith("A 2 TB drive does not fill within 365 days: the backups need about ")
    assert text.splitlines()[0].endswith("less than 1 % of it.")
    small = base_history("plan", *PRACTICE, "--days", "30", "--drive-size", "1M").text
    assert small.startswith(
        f"A 1 MB drive is already too small: the backups hold {today / 1e6:.3g} MB"
    )
