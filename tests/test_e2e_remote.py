"""The real commands on remote repositories: init, snapshot, restore, check --read-data, forget
and gc on the SFTP and S3 test servers, through the CLI (proves the backends under real use)."""

from __future__ import annotations

import os
import random
import uuid

from tests.clitools import Cli
from tests.servers import S3Server, SFTPServer
from tests.support import assert_same_tree, make_tree


def _lifecycle(cli: Cli, tmp_path) -> None:
    data = str(tmp_path / "data")
    make_tree(data)
    with open(os.path.join(data, "dump.sql"), "wb") as f:
        f.write(random.Random(3).randbytes(2_000_000))
    cli("init")
    old = cli("snapshot", data, "--json", "--time", "2026-01-05T22:00").json()
    with open(os.path.join(data, "dump.sql"), "wb") as f:
        f.write(random.Random(4).randbytes(2_000_000))  # all new: the old one becomes garbage
    new = cli("snapshot", data, "--json", "--time", "2026-01-06T22:00").json()
    assert new["bytes_added"] > 2_000_000

    target = str(tmp_path / "restored")
    cli("restore", new["id"][:8], "--target", target)
    assert_same_tree(data, target + data)
    check = cli("check", "--read-data", "--json").json()
    assert check["ok"] is True and check["errors"] == []

    forget = cli("forget", "--keep-last", "1", "--json").json()
    assert [s["id"] for s in forget["remove"]] == [old["id"]]
    gc = cli("gc", "--json").json()
    assert gc["freed_bytes"] > 1_500_000
    assert gc["stored_bytes_after"] < gc["stored_bytes_before"]
    assert cli("check", "--read-data", "--json").json()["ok"] is True
    again = str(tmp_path / "again")
    cli("restore", "latest", "--target", again)
    assert_same_tree(data, again + data)


def test_lifecycle_on_sftp(tmp_path, sftp_server: SFTPServer):
    url = sftp_server.url(f"{sftp_server.root}/{uuid.uuid4().hex}")
    cli = Cli(url, str(tmp_path / "cache"))
    cli.env |= sftp_server.env()
    _lifecycle(cli, tmp_path)


def test_lifecycle_on_s3(tmp_path, s3_server: S3Server):
    cli = Cli(f"s3://life-{uuid.uuid4().hex[:12]}/repo", str(tmp_path / "cache"))
    cli.env |= s3_server.env()
    _lifecycle(cli, tmp_path)
