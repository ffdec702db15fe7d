"""Streams are cut with the repository's stream chunker parameters (docs/FORMAT-chunking.md).

A new repository has a stream set beside its file set; a stream snapshot (stdin or
`--stdin-from-command`) is cut with it and restores bit for bit; a repository made before the set
existed (its sealed settings have no stream fields) cuts streams with its one set, as before; the
set travels with `init --same-key-as`, and copying stream snapshots between such repositories
moves only what the destination lacks. Chunk boundaries are never counted: each check compares
the blob ids of a snapshot with a re-cut of the same bytes by the chunker that should have cut it.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import pytest

from dedupe import codec
from dedupe.backup.session import chunker_for
from dedupe.chunker import DEFAULT_AVG, DEFAULT_STREAM_AVG, Chunker, ChunkerParams
from dedupe.errors import FormatError
from dedupe.model.tree import FILE
from dedupe.repo import config as config_mod
from dedupe.repo import manifests
from dedupe.repo.repository import Repository
from dedupe.repo.treewalk import find
from tests.clitools import Cli, initialized_cli
from tests.support import PASSWORD, open_repo

STREAM_BYTES = 3 << 20
DRIVE_PASSWORD = "drive password, not the server's"


def dump_bytes(seed: int = 5) -> bytes:
    """A stand-in for a database dump: text lines with a random field, compressible like one."""
    rng = random.Random(seed)
    lines = []
    size = 0
    row = 0
    while size < STREAM_BYTES:
        row += 1
        line = f"{row}\t{rng.randrange(10**6)}\t{rng.randbytes(24).hex()}\tpaid\n".encode()
        lines.append(line)
        size += len(line)
    return b"".join(lines)


def changed_rows(data: bytes, seed: int = 6, rows: int = 40) -> bytes:
    """`data` with `rows` lines spread over the file rewritten (a night's scattered updates)."""
    rng = random.Random(seed)
    lines = data.split(b"\n")
    for index in rng.sample(range(len(lines) - 1), rows):
        lines[index] = lines[index].replace(b"paid", b"open")
    return b"\n".join(lines)


def stream_node_ids(repo: Repository, snapshot_id: str, name: bytes) -> tuple[bytes, ...]:
    snap = manifests.load(repo, snapshot_id)
    _parent, node = find(repo, snap.tree, b"/" + name)
    assert node is not None and node.type == FILE
    return node.content


def cut_ids(repo: Repository, params: ChunkerParams, data: bytes) -> list[bytes]:
    """The blob ids `data` gets when cut with `params` and the repository's seed."""
    chunker = Chunker(params, repo.key.chunker_seed)
    return [repo.hash(chunk) for chunk in chunker.cut(data)]


def stream_snapshot(cli: Cli, data: bytes, name: str = "practice.sql") -> str:
    result = cli("--json", "snapshot", "--stdin-name", name, "-", input=data)
    return result.json()["id"]


def make_old(path: str) -> None:
    """Rewrite a repository's config as dedupe wrote it before the stream set existed."""
    repo = open_repo(path)
    old = dataclasses.replace(repo.settings, stream_chunker=None)
    repo.storage.put("config", config_mod.encode_config(old, repo.sealer))


def test_a_new_repository_cuts_streams_with_the_stream_set(tmp_path):
    cli = initialized_cli(tmp_path)
    repo = open_repo(cli.repo)
    assert repo.settings.stream_chunker == ChunkerParams.for_average(DEFAULT_STREAM_AVG)
    assert repo.settings.chunker == ChunkerParams.for_average(DEFAULT_AVG)
    data = dump_bytes()
    snap_id = stream_snapshot(cli, data)
    repo = open_repo(cli.repo)
    ids = stream_node_ids(repo, snap_id, b"practice.sql")
    assert list(ids) == cut_ids(repo, repo.settings.stream_chunker, data)
    assert list(ids) != cut_ids(repo, repo.settings.chunker, data)
    assert chunker_for(repo, stream=True).params == repo.settings.stream_chunker
    assert chunker_for(repo, stream=False).params == repo.settings.chunker
    # Files keep the file set: the same bytes as a file are cut as before.
    (tmp_path / "practice.sql").write_bytes(data)
    file_snap = cli("--json", "snapshot", str(tmp_path / "practice.sql")).json()["id"]
    repo = open_repo(cli.repo)
    file_ids = stream_node_ids(repo, file_snap, str(tmp_path / "practice.sql").encode()[1:])
    assert list(file_ids) == cut_ids(repo, repo.settings.chunker, data)
    # Bit for bit, through restore and through cat.
    target = tmp_path / "restored"
    cli("restore", snap_id, "--target", str(target))
    assert (target / "practice.sql").read_bytes() == data
    assert cli("cat", snap_id, "practice.sql").out == data
    assert cli("check", "--read-data").code == 0


def test_a_command_stream_uses_the_stream_set(tmp_path):
    cli = initialized_cli(tmp_path)
    data = dump_bytes(seed=8)
    source = tmp_path / "dump.sql"
    source.write_bytes(data)
    command = [
        sys.executable,
        "-c",
        f"import sys; sys.stdout.buffer.write(open({str(source)!r}, 'rb').read())",
    ]
    result = cli(
        "--json", "snapshot", "--stdin-name", "db.sql", "--stdin-from-command", "--", *command
    )
    repo = open_repo(cli.repo)
    ids = stream_node_ids(repo, result.json()["id"], b"db.sql")
    assert repo.settings.stream_chunker is not None
    assert list(ids) == cut_ids(repo, repo.settings.stream_chunker, data)
    assert cli("cat", "latest", "db.sql").out == data


def test_a_repository_without_a_stream_set_cuts_streams_as_before(tmp_path):
    cli = initialized_cli(tmp_path)
    data = dump_bytes()
    before = stream_snapshot(cli, data)  # cut with the stream set while it was there
    make_old(cli.repo)
    repo = open_repo(cli.repo)
    assert repo.settings.stream_chunker is None
    assert repo.settings.stream_params == repo.settings.chunker
    later = changed_rows(data)
    snap_id = stream_snapshot(cli, later)
    repo = open_repo(cli.repo)
    assert list(stream_node_ids(repo, snap_id, b"practice.sql")) == cut_ids(
        repo, repo.settings.chunker, later
    )
    assert cli("cat", snap_id, "practice.sql").out == later
    assert cli("cat", before, "practice.sql").out == data
    assert cli("check", "--read-data").code == 0


def test_the_stream_set_is_three_optional_fields_of_format_version_1(tmp_path):
    """What an older dedupe reads is where it was: the same version, the same fields (it
    ignores the stream fields and cuts streams with the file set, which is correct)."""
    cli = initialized_cli(tmp_path)
    repo = open_repo(cli.repo)
    _repo_id, box = config_mod.read_envelope((Path(cli.repo) / "config").read_bytes())
    fields = codec.unpack(repo.sealer.open(box, "config"), "config")
    assert fields["v"] == 1 == codec.FORMAT_VERSION
    assert (fields["chunk_min"], fields["chunk_avg"], fields["chunk_max"]) == (
        DEFAULT_AVG // 4,
        DEFAULT_AVG,
        DEFAULT_AVG * 4,
    )
    assert fields["stream_chunk_avg"] == DEFAULT_STREAM_AVG
    # Only one or two of the three is damage, named as such.
    for missing in config_mod.STREAM_FIELDS:
        partial = {k: v for k, v in fields.items() if k != missing}
        sealed = repo.sealer.seal(codec.pack(partial))
        with pytest.raises(FormatError, match=missing):
            config_mod.decode_settings(sealed, repo.settings.repo_id, repo.sealer)
    bad = fields | {"stream_chunk_avg": 3 << 20, "stream_chunk_max": 1 << 20}
    with pytest.raises(FormatError, match="repository config"):
        config_mod.decode_settings(
            repo.sealer.seal(codec.pack(bad)), repo.settings.repo_id, repo.sealer
        )


def same_key_drive(server: Cli, tmp_path: Path, option: str = "--same-key-as") -> Cli:
    drive = Cli(str(tmp_path / "drive"), str(tmp_path / "cache"), password=DRIVE_PASSWORD)
    drive("init", option, server.repo, env={"DEDUPE_FROM_PASSWORD": PASSWORD})
    return drive


@pytest.mark.parametrize("option", ["--same-key-as", "--copy-chunker-params-from"])
def test_the_stream_set_travels_with_the_key(tmp_path, option):
    server = initialized_cli(tmp_path)
    drive = same_key_drive(server, tmp_path, option)
    server_settings = open_repo(server.repo).settings
    drive_settings = open_repo(drive.repo, password=DRIVE_PASSWORD).settings
    assert drive_settings.stream_chunker == server_settings.stream_chunker is not None
    assert drive_settings.chunker == server_settings.chunker


def test_carried_settings_take_both_sets_from_the_template():
    """`config.carried` (what `Repository.init` uses for a template) copies both chunker sets
    and the pack size, and no stream set from a template that has none."""
    template = config_mod.Settings(
        b"t" * 16,
        ChunkerParams.for_average(1 << 20),
        "zstd",
        8 << 20,
        ChunkerParams.for_average(4096),
    )
    new = config_mod.Settings(b"n" * 16, ChunkerParams.for_average(DEFAULT_AVG), "none")
    made = config_mod.carried(new, template)
    assert (made.repo_id, made.compression) == (b"n" * 16, "none")
    assert (made.chunker, made.stream_chunker, made.pack_size) == (
        template.chunker,
        template.stream_chunker,
        template.pack_size,
    )
    old_template = dataclasses.replace(template, stream_chunker=None)
    assert config_mod.carried(new, old_template).stream_chunker is None


def test_a_drive_of_an_older_server_cuts_streams_like_the_server(tmp_path):
    server = initialized_cli(tmp_path)
    make_old(server.repo)
    drive = same_key_drive(server, tmp_path)
    assert open_repo(drive.repo, password=DRIVE_PASSWORD).settings.stream_chunker is None


def test_copying_stream_snapshots_moves_only_missing_blobs(tmp_path):
    server = initialized_cli(tmp_path)
    drive = same_key_drive(server, tmp_path)
    to_drive = {"DEDUPE_TO_PASSWORD": DRIVE_PASSWORD}
    data = dump_bytes()
    stream_snapshot(server, data)
    first = server("--json", "copy", "--to", drive.repo, env=to_drive).json()
    assert first["mode"] == "same-ids" and len(first["copied"]) == 1
    # The next night: the drive lacks exactly the blobs the server's snapshot added.
    later = changed_rows(data)
    night = stream_snapshot(server, later)
    added = manifests.load(open_repo(server.repo), night).summary["blobs_new"]
    nightly = server("--json", "copy", "--to", drive.repo, env=to_drive).json()
    assert nightly["copied"] == [night]
    assert nightly["blobs_added"] == added
    # The drive backs the same dump up itself: every data blob is there already (same cut
    # points); at most its root tree is new (the stream's mtime is the snapshot's time).
    own = drive("--json", "snapshot", "--stdin-name", "practice.sql", "-", input=later).json()
    drive_repo = open_repo(drive.repo, password=DRIVE_PASSWORD)
    assert manifests.load(drive_repo, own["id"]).summary["blobs_new"] <= 1
    assert drive("cat", night, "practice.sql").out == later
