"""`dedupe copy` and `init --copy-chunker-params-from` end to end, through the real CLI.

Local to local in both ways (re-chunk for unrelated keys, chunks as they are for shared chunker
parameters), idempotence, passwords, a missing destination, a copy killed and resumed, and the
chain local -> SFTP -> S3 on the real test servers, restored bit for bit from the last copy.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import uuid

import pytest

from tests.clitools import Cli
from tests.servers import S3Server, SFTPServer
from tests.support import (
    PASSWORD,
    assert_same_tree,
    files_under,
    make_tree,
    open_repo,
    wait_for_new_file,
)

DEST_PASSWORD = "another password for the drive"


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _make_source(tmp_path) -> tuple[Cli, str, list[str]]:
    """A source repository with two snapshots of a varied tree (the second slightly changed)."""
    cli = Cli(str(tmp_path / "src-repo"), str(tmp_path / "cache"))
    cli("init")
    data = str(tmp_path / "data")
    make_tree(data)
    _write(os.path.join(data, "big", "dump.sql"), random.Random(1).randbytes(3_000_000))
    first = cli("snapshot", data, "--json").json()["id"]
    with open(os.path.join(data, "big", "dump.sql"), "ab") as f:
        f.write(b"one more row\n")
    second = cli("snapshot", data, "--json", "--tag", "nightly").json()["id"]
    return cli, data, [first, second]


@pytest.fixture(scope="module")
def pristine_source(tmp_path_factory) -> tuple[Cli, str, list[str]]:
    """`_make_source`, built once for the module; tests take copies (`source`)."""
    return _make_source(tmp_path_factory.mktemp("pristine-source"))


@pytest.fixture
def source(pristine_source, tmp_path) -> tuple[Cli, str, list[str]]:
    """A copy of the module's source repository and its cache at tmp_path (copies write their
    journal and holds there). The data folder is the module's and must stay as it is: a test
    that changes it makes its own source (`fresh_source`)."""
    pristine, data, ids = pristine_source
    shutil.copytree(pristine.repo, tmp_path / "src-repo")
    shutil.copytree(pristine.env["DEDUPE_CACHE_DIR"], tmp_path / "cache")
    return Cli(str(tmp_path / "src-repo"), str(tmp_path / "cache")), data, ids


@pytest.fixture
def fresh_source(tmp_path) -> tuple[Cli, str, list[str]]:
    """`_make_source` at tmp_path: its own data folder, to change."""
    return _make_source(tmp_path)


def _dest(tmp_path, name: str, password: str = DEST_PASSWORD, *init_args: str, env=None) -> Cli:
    cli = Cli(str(tmp_path / name), str(tmp_path / "cache"), password=password)
    cli("init", *init_args, env=env)
    return cli


def _dest_env(dest: Cli) -> dict[str, str]:
    """What a `copy` subprocess needs to reach and unlock `dest`."""
    reach = {k: v for k, v in dest.env.items() if k.startswith(("AWS_", "DEDUPE_S"))}
    return reach | {"DEDUPE_TO_PASSWORD": dest.env["DEDUPE_PASSWORD"]}


def _copy(src: Cli, dest: Cli, *args: str, check: bool = True):
    return src("copy", "--to", dest.repo, "--json", *args, env=_dest_env(dest), check=check)


def _restore_latest(cli: Cli, tmp_path, data: str, name: str) -> None:
    target = str(tmp_path / name)
    cli("restore", "latest", "--target", target)
    assert_same_tree(data, target + data)


def test_copy_with_other_keys_rechunks_and_is_idempotent(source, tmp_path):
    src, data, ids = source
    dest = _dest(tmp_path, "drive")
    result = _copy(src, dest).json()
    assert result["copied"] == ids and result["skipped"] == []
    assert result["mode"] == "rechunk" and result["bytes_added"] > 3_000_000
    listed = dest("snapshots", "--json").json()
    assert [s["id"] for s in listed] == ids
    assert listed[1]["tags"] == ["nightly"]
    _restore_latest(dest, tmp_path, data, "restored")
    assert dest("check", "--read-data", "--json").json()["ok"] is True

    again = _copy(src, dest).json()
    assert again["copied"] == [] and again["skipped"] == ids
    assert again["bytes_added"] == 0 and again["bytes_read"] == 0


def test_nightly_rechunk_copy_reads_only_what_changed(fresh_source, tmp_path):
    src, data, ids = fresh_source
    dest = _dest(tmp_path, "drive")
    _copy(src, dest)
    with open(os.path.join(data, "plain.txt"), "ab") as f:
        f.write(b"tonight's change\n")
    third = src("snapshot", data, "--json").json()["id"]
    result = _copy(src, dest).json()
    assert result["copied"] == [third]
    # Folders and files of the copied snapshots are paired with their copies: only the
    # changed file is read again (not the 3 MB dump or the rest of the tree).
    assert result["bytes_read"] < 10_000
    _restore_latest(dest, tmp_path, data, "restored")


def test_shared_chunker_params_copy_only_missing_blobs(source, tmp_path):
    src, data, ids = source
    env = {"DEDUPE_FROM_PASSWORD": PASSWORD}
    dest = _dest(tmp_path, "drive", DEST_PASSWORD, "--copy-chunker-params-from", src.repo, env=env)
    first = _copy(src, dest, ids[0]).json()
    assert first["copied"] == [ids[0]] and first["mode"] == "same-ids"
    second = _copy(src, dest).json()
    assert second["copied"] == [ids[1]] and second["skipped"] == [ids[0]]
    # Only the appended row's chunk and the changed trees cross over.
    assert second["bytes_read"] < first["bytes_read"] / 10

    src_repo = open_repo(src.repo)
    dest_repo = open_repo(dest.repo, password=DEST_PASSWORD)
    assert dest_repo.key.enc_key != src_repo.key.enc_key
    assert dest_repo.settings.repo_id != src_repo.settings.repo_id
    src_ids = {blob_id for blob_id, _loc in src_repo.index.items()}
    dest_ids = {blob_id for blob_id, _loc in dest_repo.index.items()}
    assert dest_ids == src_ids  # same ids: nothing was re-chunked
    _restore_latest(dest, tmp_path, data, "restored")
    assert dest("check", "--read-data", "--json").json()["ok"] is True


def test_same_params_refuse_chunk_size_and_wrong_source_password(source, tmp_path):
    src, _data, _ids = source
    cli = Cli(str(tmp_path / "drive"), str(tmp_path / "cache"), password=DEST_PASSWORD)
    both = cli("init", "--copy-chunker-params-from", src.repo, "--chunk-size", "1M", check=False)
    assert both.code == 2
    wrong = cli("init", "--copy-params-from", src.repo, check=False)  # falls back to DEST_PASSWORD
    assert wrong.code == 12 and "Traceback" not in wrong.err
    assert not os.path.exists(tmp_path / "drive")


def test_destination_password_defaults_to_the_source_password(source, tmp_path):
    src, _data, ids = source
    dest = _dest(tmp_path, "drive", PASSWORD)
    result = src("copy", "--to", dest.repo, "--json").json()
    assert result["copied"] == ids


def test_wrong_destination_password_is_exit_12(source, tmp_path):
    src, _data, _ids = source
    dest = _dest(tmp_path, "drive")
    result = src("copy", "--to", dest.repo, env={"DEDUPE_TO_PASSWORD": "nope"}, check=False)
    assert result.code == 12 and "destination" in result.err and "nope" not in result.err
    assert "Traceback" not in result.err
    assert dest("snapshots", "--json").json() == []


def test_missing_or_unmounted_destination_is_exit_10_and_creates_nothing(source, tmp_path):
    src, _data, _ids = source
    missing = str(tmp_path / "media" / "drive-tuesday")
    result = src("copy", "--to", missing, check=False)
    assert result.code == 10 and "no dedupe repository" in result.err
    assert not os.path.exists(missing) and not os.path.exists(tmp_path / "media")
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    result = src("copy", "--to", str(mount_point), check=False)
    assert result.code == 10
    assert os.listdir(mount_point) == []


def test_copy_killed_midway_is_finished_by_the_next_run(tmp_path):
    src = Cli(str(tmp_path / "src-repo"), str(tmp_path / "cache"))
    src("init")
    data = str(tmp_path / "data")
    ids = []
    for night in range(2):
        _write(os.path.join(data, f"dump-{night}.bin"), random.Random(night).randbytes(24 << 20))
        ids.append(src("snapshot", data, "--json").json()["id"])
    dest = _dest(tmp_path, "drive")
    packs = os.path.join(dest.repo, "data")
    before = files_under(packs)
    proc = subprocess.Popen(
        src.command("copy", "--to", dest.repo),
        env=src.env | _dest_env(dest),
        stderr=subprocess.PIPE,
    )
    wait_for_new_file(packs, proc, before)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Killed after its first pack: no manifest yet (they come after the index). The locks it
    # left belong to a dead process of this host, so they are stale: no unlock needed.
    assert dest("snapshots", "--json").json() == []
    result = _copy(src, dest).json()
    assert sorted(result["copied"] + result["skipped"]) == sorted(ids)
    assert dest("check", "--read-data", "--json").json()["ok"] is True
    _restore_latest(dest, tmp_path, data, "restored")


def test_copy_local_to_sftp_to_s3_with_three_passwords(
    source, tmp_path, sftp_server: SFTPServer, s3_server: S3Server
):
    src, data, ids = source
    remote_env = sftp_server.env() | s3_server.env()
    sftp = Cli(
        sftp_server.url(f"{sftp_server.root}/{uuid.uuid4().hex}"),
        str(tmp_path / "cache"),
        password="sftp password",
    )
    sftp.env |= remote_env
    sftp("init")
    first = _copy(src, sftp).json()
    assert first["copied"] == ids and first["mode"] == "rechunk"

    s3 = Cli(f"s3://copy-{uuid.uuid4().hex[:12]}/repo", str(tmp_path / "cache"), "s3 password")
    s3.env |= remote_env
    s3(
        "init",
        "--copy-chunker-params-from",
        sftp.repo,
        env={"DEDUPE_FROM_PASSWORD": "sftp password"},
    )
    second = _copy(sftp, s3).json()
    assert second["copied"] == ids and second["mode"] == "same-ids"
    assert _copy(sftp, s3).json()["copied"] == []
    assert s3("check", "--read-data", "--json").json()["ok"] is True
    _restore_latest(s3, tmp_path, data, "restored")


# --- holds travel with the copy (the contract: held in the source -> held in the destination) --

FISCAL = "fiscal year end 2026"


@pytest.fixture(params=["rechunk", "same-ids"])
def drive(request, tmp_path) -> Cli:
    """An empty destination for `source`: unrelated keys (re-chunk) or the source's chunker
    parameters (blobs copied as they are); holds must travel both ways."""
    if request.param == "rechunk":
        return _dest(tmp_path, "drive")
    env = {"DEDUPE_FROM_PASSWORD": PASSWORD}
    return _dest(
        tmp_path,
        "drive",
        DEST_PASSWORD,
        "--copy-chunker-params-from",
        str(tmp_path / "src-repo"),
        env=env,
    )


def _holds(cli: Cli) -> dict[str, str | None]:
    """Held snapshot id -> its reason, as `snapshots --json` shows them."""
    return {s["id"]: s["hold_reason"] for s in cli("snapshots", "--json").json() if s["held"]}


def _assert_check_clean(cli: Cli) -> None:
    result = cli("check", "--json")
    assert result.json()["ok"] is True
    assert "hold record" not in result.err and "warning" not in result.err


def test_copy_holds_a_held_snapshot_on_a_fresh_destination(source, drive, tmp_path):
    src, _data, ids = source
    src("hold", ids[0], "--reason", FISCAL)
    result = _copy(src, drive).json()
    assert result["copied"] == ids and result["held"] == []
    assert result["mode"] == _expected_mode(drive, tmp_path)
    assert _holds(drive) == {ids[0]: FISCAL}
    assert (tmp_path / "drive" / "holds" / ids[0]).is_file()
    _assert_check_clean(drive)
    # The older, held snapshot survives both a count policy and the cap on the drive.
    forget = drive("forget", "--keep-last", "1", "--json").json()
    assert ids[0] in {item["id"] for item in forget["keep"]}
    assert [s["id"] for s in drive("snapshots", "--json").json()] == ids
    # Over the cap, the one that goes is the newer, unheld snapshot.
    drive("forget", "--keep-last", "1", "--max-backups", "1")
    assert [s["id"] for s in drive("snapshots", "--json").json()] == [ids[0]]


def _expected_mode(drive: Cli, tmp_path) -> str:
    """The copy mode `drive` was made for (its chunker key is the source's, or not)."""
    same = open_repo(drive.repo, password=DEST_PASSWORD).key.id_key == (
        open_repo(str(tmp_path / "src-repo")).key.id_key
    )
    return "same-ids" if same else "rechunk"


def test_hold_added_after_the_copy_reaches_the_destination_on_the_next_copy(source, drive):
    src, _data, ids = source
    _copy(src, drive)
    assert _holds(drive) == {}
    src("hold", ids[0], "--reason", FISCAL)
    again = _copy(src, drive).json()
    assert again["copied"] == [] and again["skipped"] == ids
    assert again["held"] == [ids[0]] and again["bytes_added"] == 0
    assert _holds(drive) == {ids[0]: FISCAL}
    _assert_check_clean(drive)
    rows = {line[:8]: line for line in drive("snapshots").text.splitlines()}
    assert "  held  " in rows[ids[0][:8]] and "  held  " not in rows[ids[1][:8]]

    # A new reason in the source replaces the drive's; the human output names it.
    src("hold", ids[0], "--reason", "audit 2027")
    human = src("copy", "--to", drive.repo, env=_dest_env(drive))
    assert "held on the destination: 1 snapshot (reason: audit 2027)" in human.text
    assert _holds(drive) == {ids[0]: "audit 2027"}
    # Nothing left to carry: the next copy holds nothing.
    assert _copy(src, drive).json()["held"] == []


def test_hold_made_only_by_a_source_record_is_carried(source, drive, tmp_path):
    """A source snapshot whose manifest was put back unheld is still held by its record (as
    `forget` sees it): the copy holds it on the destination."""
    src, _data, ids = source
    manifest = tmp_path / "src-repo" / "snapshots" / ids[1]
    unheld = manifest.read_bytes()
    src("hold", ids[1], "--reason", FISCAL)
    manifest.write_bytes(unheld)
    assert src("snapshots", "--json").json()[1]["held"] is False
    _copy(src, drive)
    assert _holds(drive) == {ids[1]: FISCAL}
    _assert_check_clean(drive)


def test_copy_interrupted_before_the_hold_record_is_completed_by_the_next_copy(source, tmp_path):
    """A crash after the held manifest and before its record leaves the copy held (check
    warns); the next copy writes the record."""
    src, _data, ids = source
    drive = _dest(tmp_path, "drive")
    src("hold", ids[0], "--reason", FISCAL)
    _copy(src, drive)
    (tmp_path / "drive" / "holds" / ids[0]).unlink()  # as if killed between the two writes
    assert "no hold record" in drive("check").err
    assert _holds(drive) == {ids[0]: FISCAL}
    assert _copy(src, drive).json()["held"] == [ids[0]]
    _assert_check_clean(drive)


def test_destination_holds_stay_and_releases_do_not_travel(source, drive):
    src, _data, ids = source
    src("hold", ids[1], "--reason", FISCAL)
    _copy(src, drive)
    drive("hold", ids[0], "--reason", "archive copy")  # the drive holds more than the source
    src("release", ids[1])
    result = _copy(src, drive).json()
    assert result["held"] == [] and result["copied"] == []
    assert _holds(drive) == {ids[0]: "archive copy", ids[1]: FISCAL}
    _assert_check_clean(drive)

    # A source hold without a reason keeps the drive's reason for the same snapshot.
    src("hold", ids[0])
    assert _copy(src, drive).json()["held"] == []
    assert _holds(drive)[ids[0]] == "archive copy"
