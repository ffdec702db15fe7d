"""Hostile or odd repository contents and inputs that used to cost a traceback, a lock-out or
the terminal: extreme snapshot times, key files of an unknown version or of planted cost,
control characters in names, NaN in a manifest summary, a policy file that is not UTF-8 and an
unbounded `plan --days`."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgpack
import pytest

from dedupe import codec
from dedupe.crypto import kdf
from dedupe.errors import WrongPassword
from dedupe.model.snapshot import Snapshot, decode_snapshot
from dedupe.repo import manifests
from dedupe.repo.repository import Repository
from dedupe.retention import Duration, Policy, SnapshotInfo, apply_policy
from dedupe.storage import open_storage
from tests.clitools import Cli, initialized_cli
from tests.support import CHEAP_KDF, PASSWORD

YEAR_1 = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
YEAR_9999 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = initialized_cli(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "letter.txt").write_bytes(b"patient letter\n")
    c("snapshot", str(src), "--time", "2026-03-02T23:00:00+01:00")
    c("snapshot", str(src), "--time", "2026-03-03T23:00:00+01:00")
    return c


def open_as_cli(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Repository:
    """Opened through the storage URL with the CLI's cache folder (where the last-key-file hint
    lives), as `dedupe` itself opens it."""
    monkeypatch.setenv("DEDUPE_CACHE_DIR", cli.env["DEDUPE_CACHE_DIR"])
    return Repository.open(open_storage(cli.repo), lambda: PASSWORD.encode())


def add_snapshot(repo: Repository, **changes: object) -> Snapshot:
    """A copy of the newest snapshot with `changes`, saved through the library (as an older
    dedupe, or a hostile writer holding the key, could have written it)."""
    base = manifests.load_all(repo)[-1]
    snap = dataclasses.replace(base, id=manifests.new_snapshot_id(), **changes)
    manifests.save(repo, snap)
    return snap


# --- extreme snapshot times --------------------------------------------------------------------


@pytest.mark.parametrize("tz", [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
def test_retention_orders_extreme_times_in_any_zone(tz: timezone) -> None:
    def info(name: str, when: datetime) -> SnapshotInfo:
        return SnapshotInfo(id=name, time=when, host="h", paths=("/p",))

    normal = datetime(2026, 3, 3, 23, 0, tzinfo=UTC)
    infos = [info("year1", YEAR_1), info("normal", normal), info("year9999", YEAR_9999)]
    decisions = apply_policy(
        infos,
        Policy(
            keep_last=2,
            keep_business_days=2,
            keep_weekly=2,
            keep_monthly=2,
            keep_quarterly=2,
            keep_yearly=2,
            keep_within=Duration.parse("10y1h"),
            max_backups=2,
        ),
        tz,
    )
    assert [d.snapshot.id for d in decisions] == ["year9999", "normal", "year1"]
    assert [d.keep for d in decisions] == [True, True, False]


def test_year_1_snapshot_is_listed_and_forget_removes_it(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = add_snapshot(open_as_cli(cli, monkeypatch), time=YEAR_1)
    assert old.id[:8] in cli("snapshots").text
    assert cli("stats").code == 0
    dry = cli("forget", "--keep-last", "2", "--keep-within", "1y", "--dry-run", "--json").json()
    assert [item["id"] for item in dry["remove"]] == [old.id]
    table = cli("forget", "--keep-last", "2", "--keep-within", "1y").text
    assert old.id[:8] in table and "removed 1" in table
    assert not os.path.exists(os.path.join(cli.repo, "snapshots", old.id))


def test_plan_leaves_out_a_year_9999_snapshot(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = open_as_cli(cli, monkeypatch)
    future = add_snapshot(repo, time=YEAR_9999)
    add_snapshot(repo, time=YEAR_1)
    result = cli("plan", "--keep-last", "3", "--days", "30", "--json")
    assert future.id[:8] in result.err and "left out of the forecast" in result.err
    forecast = result.json()
    assert forecast["start"] == "2026-03-03" and forecast["days"] == 30
    assert cli("snapshots", "--json").json()  # listed, valid JSON
    # forget keeps the newest (year 9999) and can still judge the rest.
    assert cli("forget", "--keep-last", "1").code == 0
    assert os.listdir(os.path.join(cli.repo, "snapshots")) == [future.id]


def test_plan_days_is_bounded(cli: Cli) -> None:
    for days in ("0", "36501", "99999999999"):
        result = cli("plan", "--keep-last", "3", "--days", days, check=False, timeout=60)
        assert result.code == 2 and "--days" in result.err


# --- key files ---------------------------------------------------------------------------------


def plant_key_file(cli: Cli, name: str, version: int = codec.FORMAT_VERSION, **params: int) -> None:
    """A key file envelope that decodes (caps respected) but seals nothing of use."""
    envelope = {
        "v": version,
        "kdf": "argon2id",
        "salt": secrets.token_bytes(kdf.SALT_BYTES),
        "ops": params.get("ops", CHEAP_KDF.ops),
        "mem": params.get("mem", CHEAP_KDF.mem),
        "box": secrets.token_bytes(80),
    }
    Path(cli.repo, "keys", name).write_bytes(msgpack.packb(envelope, use_bin_type=True))


def test_key_file_of_unknown_version_is_skipped(cli: Cli) -> None:
    plant_key_file(cli, "0000000000000000", version=99)
    assert cli("snapshots").code == 0
    check = cli("check")
    assert "0000000000000000" in check.err and "format version" in check.err
    for name in os.listdir(os.path.join(cli.repo, "keys")):
        if name != "0000000000000000":
            os.unlink(os.path.join(cli.repo, "keys", name))
    result = cli("snapshots", check=False)
    assert result.code == 12
    assert "unknown format version" in result.err and "newer dedupe" in result.err
    assert "Traceback" not in result.err


def test_planted_expensive_key_file_is_never_derived(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The caps' maximum: deriving it would take seconds and 2 GiB. It sorts first by name.
    plant_key_file(cli, "0000000000000000", ops=kdf.MAX_OPS, mem=kdf.MAX_MEM)
    before = kdf.derivations
    open_as_cli(cli, monkeypatch)
    assert kdf.derivations - before == 1
    assert cli("snapshots", timeout=120).code == 0


def test_the_key_file_that_opened_last_is_tried_first(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As cheap as the real key file and first by name: only the remembered name avoids it.
    plant_key_file(cli, "0000000000000000")
    cache = Path(cli.env["DEDUPE_CACHE_DIR"])
    for hint in cache.glob("*/last-key-file"):
        hint.unlink()
    before = kdf.derivations
    repo = open_as_cli(cli, monkeypatch)
    assert kdf.derivations - before == 2
    hint = cache / repo.settings.repo_id.hex() / "last-key-file"
    assert hint.read_text() == repo.key_name  # the name only
    before = kdf.derivations
    open_as_cli(cli, monkeypatch)
    assert kdf.derivations - before == 1
    hint.write_text("keys/not-there")  # a stale or bogus hint only costs the order
    assert open_as_cli(cli, monkeypatch).key_name == repo.key_name
    with pytest.raises(WrongPassword):
        Repository.open(open_storage(cli.repo), lambda: b"wrong")


# --- control characters ------------------------------------------------------------------------


def test_control_characters_are_escaped_in_human_output(cli: Cli, tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    name = "scan\x1b]0;owned\x07\x9b2J.pdf"
    (evil / name).write_bytes(b"x")
    snap = cli(
        "snapshot", str(evil), "--host", "host\x1b[2J", "--tag", "t\x1b[31m", "--json"
    ).json()["id"]
    cli("hold", snap, "--reason", "court \x1b[8m hidden")
    outputs = [
        cli("snapshots"),
        cli("ls", snap),
        cli("forget", "--keep-last", "5", "--dry-run"),
        cli("stats"),
    ]
    for result in outputs:
        for text in (result.out.decode("utf-8", "surrogateescape"), result.err):
            assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text
    assert "host\\x1b[2J" in outputs[0].text
    assert "\\x1b]0;owned\\x07\\x9b2J.pdf" in outputs[1].text
    assert "court \\x1b[8m hidden" in outputs[2].text
    listed = cli("snapshots", "--json").json()
    mine = next(s for s in listed if s["id"] == snap)
    assert mine["host"] == "host\x1b[2J" and mine["tags"] == ["t\x1b[31m"]
    # An error message naming the reason is escaped too.
    os.unlink(os.path.join(cli.repo, "snapshots", snap))
    check = cli("check", check=False)
    assert check.code == 14 and "court \\x1b[8m hidden" in check.err and "\x1b" not in check.err


# --- NaN and other impossible numbers in a manifest summary ------------------------------------


def strict_json(data: bytes) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(data, parse_constant=refuse)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -5, 2**64 - 1, 1e300, -0.5])
def test_impossible_summary_numbers_are_dropped(value: float) -> None:
    plain = {
        "v": codec.FORMAT_VERSION,
        "id": b"\x01" * 32,
        "time": "2026-03-03T23:00:00+01:00",
        "host": "h",
        "user": "u",
        "paths": [b"/p"],
        "tags": [],
        "tree": b"\x02" * 32,
        "held": False,
        "summary": {"bytes_total": value, "files": 3},
    }
    snap = decode_snapshot(codec.pack(plain), "01" * 32)
    assert snap.summary == {"files": 3}


def test_nan_summary_gives_valid_json_and_no_traceback(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = open_as_cli(cli, monkeypatch)
    snap = add_snapshot(
        repo, summary={"bytes_total": float("nan"), "bytes_added": float("inf"), "files": 1}
    )
    listed = strict_json(cli("snapshots", "--json").out)
    assert isinstance(listed, list) and snap.id in {s["id"] for s in listed}
    stats = cli("stats", "--json")
    assert "Traceback" not in stats.err
    strict_json(stats.out)
    assert cli("stats").code == 0


# --- policy files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"keep-last = 3\nkeep-daily = \xff\xfe7\n", b"\xef\xbb\xbfkeep-last = \x80"]
)
def test_policy_file_that_is_not_utf8_is_exit_2(
    cli: Cli, tmp_path: Path, content: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_bytes(content)
    for command in ("forget", "plan"):
        extra = ["--days", "5"] if command == "plan" else ["--dry-run"]
        result = cli(command, "--policy", str(policy), *extra, check=False)
        assert result.code == 2, result.err
        assert str(policy) in result.err and "UTF-8" in result.err
        assert "Traceback" not in result.err
