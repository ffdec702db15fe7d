"""gc's own defences against a listing or a read that lies, through the real CLI:

- it deletes nothing when it sees no snapshot while packs exist, or far fewer snapshots than the
  census recorded (unless told: --allow-empty, --accept-snapshot-count N for exactly N);
- packs no index names and temporaries younger than 24 hours (by the storage's clock) are kept,
  e.g. those of a snapshot SIGKILLed mid-write; once older they are collected;
- the census is sealed, and damage to it or to an index file stops gc with the way out.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dedupe import codec
from dedupe.errors import DamageError
from dedupe.gc.survey import GRACE_SECONDS
from dedupe.repo import census
from dedupe.repo import config as config_mod
from dedupe.repo.index import decode_index
from dedupe.repo.repository import pack_id_from_name
from tests.clitools import KILL_ENTRY, Cli, initialized_cli
from tests.support import digest_tree, open_repo


def packs_of(repo: str) -> set[str]:
    return {p for p in digest_tree(repo) if pack_id_from_name(p.replace(os.sep, "/")) is not None}


def manifests(repo: str) -> list[str]:
    return sorted(os.listdir(os.path.join(repo, "snapshots")))


def age_back(*paths: str) -> None:
    """Older than gc's grace period by the storage's clock (the file system's)."""
    old = time.time() - GRACE_SECONDS - 3600
    for path in paths:
        os.utime(path, (old, old))


def nightly(tmp_path: Path, nights: int) -> Cli:
    """A repository with one snapshot a night of a small folder that changes every night."""
    cli = initialized_cli(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(nights)
    (src / "base.bin").write_bytes(rng.randbytes(300_000))
    for night in range(nights):
        (src / "dump.sql").write_bytes(rng.randbytes(40_000))
        day = f"2026-03-{night + 1:02d}T22:00:00+00:00"
        cli("snapshot", str(src), "--time", day, "-q")
    return cli


def test_no_snapshot_seen_while_packs_exist_deletes_nothing(tmp_path):
    cli = nightly(tmp_path, 2)
    for name in manifests(cli.repo):  # the snapshots folder emptied behind gc's back
        os.unlink(os.path.join(cli.repo, "snapshots", name))
    before = digest_tree(cli.repo)
    for args in (("gc",), ("gc", "--max-unused", "0", "--json"), ("gc", "--dry-run")):
        refused = cli(*args, check=False)
        assert refused.code == 1, (args, refused.err)
        assert "no snapshots at all" in refused.err and "--allow-empty" in refused.err
        assert " MB of backup data" in refused.err and "Traceback" not in refused.err
        assert digest_tree(cli.repo) == before
    # Told so, it empties the repository.
    assert cli("gc", "--allow-empty", "--json").json()["packs_deleted"] >= 1
    assert packs_of(cli.repo) == set()
    assert cli("check", "--json").json()["ok"]


def test_a_snapshots_folder_that_cannot_be_listed_deletes_nothing(tmp_path):
    """A real error where the folder should be (a file): gc stops, whether the listing raises
    or shows nothing, and every pack stays."""
    cli = nightly(tmp_path, 2)
    folder = os.path.join(cli.repo, "snapshots")
    shutil.move(folder, str(tmp_path / "manifests"))
    Path(folder).write_bytes(b"not a folder")
    before = digest_tree(cli.repo)
    refused = cli("gc", check=False)
    assert refused.code == 1, refused.err
    assert "Traceback" not in refused.err
    assert digest_tree(cli.repo) == before


def test_a_sharp_drop_is_refused_until_exactly_that_count_is_accepted(tmp_path):
    cli = nightly(tmp_path, 12)
    assert cli("gc", "--json").json()["packs_deleted"] == 0
    assert census.load_snapshot_count(open_repo(cli.repo)) == 12
    names = manifests(cli.repo)
    for name in names[:7]:  # most manifests deleted by hand: 5 of 12 left
        os.unlink(os.path.join(cli.repo, "snapshots", name))
    before = digest_tree(cli.repo)
    for args in (("gc",), ("gc", "--dry-run"), ("gc", "--accept-snapshot-count", "4")):
        refused = cli(*args, check=False)
        assert refused.code == 1, (args, refused.err)
        assert "only 5 snapshot(s)" in refused.err and "held 12" in refused.err
        assert "--accept-snapshot-count 5" in refused.err
        assert digest_tree(cli.repo) == before
    assert cli("gc", "--accept-snapshot-count", "x", check=False).code == 2
    accepted = cli("gc", "--accept-snapshot-count", "5", "--max-unused", "0", "--json").json()
    assert accepted["freed_bytes"] > 0
    assert census.load_snapshot_count(open_repo(cli.repo)) == 5
    # The acceptance was for 5: a later drop stops gc again.
    for name in names[7:11]:
        os.unlink(os.path.join(cli.repo, "snapshots", name))
    before = digest_tree(cli.repo)
    refused = cli("gc", "--accept-snapshot-count", "5", check=False)
    assert refused.code == 1 and "only 1 snapshot(s)" in refused.err
    assert digest_tree(cli.repo) == before
    report = cli("check", "--json", check=False).json()
    assert not report["ok"]  # the journal knows these 4 snapshots were deleted by hand (issue 20)
    assert sum("deleted without dedupe" in e for e in report["errors"]) == 4


def test_a_small_drop_passes(tmp_path):
    cli = nightly(tmp_path, 4)
    cli("gc", "-q")
    os.unlink(os.path.join(cli.repo, "snapshots", manifests(cli.repo)[0]))
    assert cli("gc", "--json").json()["freed_bytes"] >= 0  # 3 of 4: a forget's usual work


def test_forget_gc_after_many_snapshots_works(tmp_path):
    """forget records the count it leaves, so gc right after it (or later) is not refused."""
    cli = nightly(tmp_path, 10)
    cli("gc", "-q")
    result = cli("forget", "--keep-last", "2", "--gc", "--json", check=False)
    assert result.code == 0, result.err
    assert result.json()["gc"]["freed_bytes"] > 0
    assert len(manifests(cli.repo)) == 2
    assert cli("gc", "--json").json()["freed_bytes"] == 0
    assert cli("check", "--read-data", "--json").json()["ok"]


def test_forget_gc_on_a_hand_emptied_snapshots_folder_stops_gc(tmp_path):
    """The refusal reaches `forget --gc` too, and forget does not launder the lost count."""
    cli = nightly(tmp_path, 10)
    cli("gc", "-q")
    for name in manifests(cli.repo)[:8]:
        os.unlink(os.path.join(cli.repo, "snapshots", name))
    packs = packs_of(cli.repo)
    result = cli("forget", "--keep-last", "5", "--gc", check=False)
    assert result.code == 1, result.err
    assert "--accept-snapshot-count 2" in result.err and "Traceback" not in result.err
    assert packs_of(cli.repo) == packs
    assert cli("gc", check=False).code == 1  # and still on the next gc


def kill_snapshot_after_packs(cli: Cli, src: Path) -> None:
    """A snapshot SIGKILLed right after its third storage write (its lock, then two packs: the
    writer names its packs in an index only at the end, so they are named by none)."""
    run = subprocess.run(
        [sys.executable, KILL_ENTRY, "snapshot", str(src), "-q"],
        env=cli.env | {"GC_TEST_KILL_AT": "3", "GC_TEST_KILL_WHEN": "after"},
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == -9, run.stderr


def unindexed_packs(repo_path: str) -> set[str]:
    repo = open_repo(repo_path)
    named = set()
    for info in repo.storage.list("index/"):
        index_file = decode_index(repo.storage.get(info.name), repo.sealer, info.name)
        named |= {c.pack_id for c in index_file.columns}
    return {i.name for i in repo.storage.list("data/") if pack_id_from_name(i.name) not in named}


def test_young_packs_of_a_killed_snapshot_survive_gc_until_they_are_old(tmp_path):
    cli = nightly(tmp_path, 1)
    repo = open_repo(cli.repo)
    settings = dataclasses.replace(repo.settings, pack_size=1 << 20)  # packs come quickly
    repo.storage.put("config", config_mod.encode_config(settings, repo.sealer))
    big = tmp_path / "big"
    big.mkdir()
    rng = random.Random(7)
    for i in range(40):  # small files: stored by the snapshot process itself, no helper
        (big / f"scan{i:02d}.pdf").write_bytes(rng.randbytes(200_000))
    kill_snapshot_after_packs(cli, big)
    young = unindexed_packs(cli.repo)
    assert len(young) >= 2
    pack_folder = os.path.dirname(os.path.join(cli.repo, *sorted(young)[0].split("/")))
    temporary = os.path.join(pack_folder, ".tmp-0123456789abcdef")  # a put in progress
    Path(temporary).write_bytes(b"x" * 4096)
    result = cli("gc", "--max-unused", "0", "--json").json()
    assert result["packs_kept_young"] == len(young) and result["temporary_files_deleted"] == 0
    assert unindexed_packs(cli.repo) == young and os.path.exists(temporary)
    said = cli("gc").text
    assert f"kept {len(young)} pack(s) written in the last 24 hours" in said
    # A day later they are leftovers: no snapshot needs them, and no writer can still be busy.
    age_back(temporary, *(os.path.join(cli.repo, *p.split("/")) for p in young))
    result = cli("gc", "--json").json()
    assert result["packs_kept_young"] == 0 and result["packs_deleted"] == len(young)
    assert result["temporary_files_deleted"] == 1 and not os.path.exists(temporary)
    assert unindexed_packs(cli.repo) == set()
    assert cli("check", "--read-data", "--json").json()["ok"]


def test_census_is_sealed_and_damage_to_it_stops_gc_with_a_way_out(tmp_path):
    cli = nightly(tmp_path, 3)
    cli("gc", "-q")
    path = os.path.join(cli.repo, census.CENSUS_NAME)
    data = Path(path).read_bytes()
    assert b"snapshots" not in data and b"time" not in data  # no plaintext map
    with pytest.raises(DamageError):
        codec.unpack(data)
    assert census.load_snapshot_count(open_repo(cli.repo)) == 3
    damaged = bytearray(data)
    damaged[-1] ^= 1
    Path(path).write_bytes(bytes(damaged))
    with pytest.raises(DamageError):
        census.load_snapshot_count(open_repo(cli.repo))  # never read as "no census"
    before = digest_tree(cli.repo)
    refused = cli("gc", check=False)
    assert refused.code == 14, refused.err
    assert "--accept-snapshot-count 3" in refused.err and digest_tree(cli.repo) == before
    cli("gc", "--accept-snapshot-count", "3", "-q")
    assert census.load_snapshot_count(open_repo(cli.repo)) == 3  # rewritten


def test_a_damaged_index_file_names_repair_index_and_nothing_is_deleted(tmp_path):
    cli = nightly(tmp_path, 2)
    os.unlink(os.path.join(cli.repo, "snapshots", manifests(cli.repo)[0]))
    index = os.path.join(cli.repo, "index")
    name = sorted(os.listdir(index))[0]
    raw = bytearray(Path(index, name).read_bytes())
    raw[len(raw) // 2] ^= 1
    Path(index, name).write_bytes(bytes(raw))
    before = digest_tree(cli.repo)
    refused = cli("gc", "--max-unused", "0", check=False)
    assert refused.code == 14, refused.err
    assert "run 'dedupe repair index' to rebuild the index from the packs" in refused.err.lower()
    assert digest_tree(cli.repo) == before


def test_record_after_forget_keeps_the_alarm_of_a_listing_that_showed_too_few(tmp_path):
    cli = nightly(tmp_path, 1)
    repo = open_repo(cli.repo)
    census.record_after_forget(repo, seen=10, removed=3)  # no census yet: counts what it saw
    assert census.load_snapshot_count(repo) == 7
    census.record_after_forget(repo, seen=2, removed=0)  # 2 seen of 7: the drop stays visible
    assert census.load_snapshot_count(repo) == 7
    census.record_after_forget(repo, seen=9, removed=8)  # more snapshots since: from what it saw
    assert census.load_snapshot_count(repo) == 1
