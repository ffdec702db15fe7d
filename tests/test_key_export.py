"""`key export` / `key import` (file and paper forms) end to end, and the paper codec itself."""

from __future__ import annotations

import os
import re

import pytest

from dedupe.crypto import export
from dedupe.errors import FormatError
from tests.clitools import Cli, initialized_cli
from tests.support import PASSWORD


@pytest.fixture
def cli(tmp_path) -> Cli:
    c = initialized_cli(tmp_path)
    (tmp_path / "f.txt").write_text("keep me")
    c("snapshot", str(tmp_path / "f.txt"))
    return c


def lose_keys(cli: Cli) -> None:
    folder = os.path.join(cli.repo, "keys")
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    assert cli("snapshots", check=False).code == 12


def test_file_export_restores_a_lost_key(cli, tmp_path):
    out = tmp_path / "key.txt"
    cli("key", "export", str(out))
    text = out.read_text()
    assert export.BEGIN in text and PASSWORD not in text
    assert os.stat(out).st_mode & 0o077 == 0
    assert cli("key", "export", str(out), check=False).code == 2  # never overwrites
    lose_keys(cli)
    assert cli("key", "import", str(out), env={"DEDUPE_PASSWORD": "wrong"}, check=False).code == 12
    cli("key", "import", str(out))
    assert cli("cat", "latest", str(tmp_path / "f.txt")).out == b"keep me"
    assert "already has" in cli("key", "import", str(out)).text


def test_paper_export_typed_back_with_slips(cli, tmp_path):
    paper = cli("key", "export", "--paper").text
    lines = [ln for ln in paper.splitlines() if re.match(r"^\d+: ", ln)]
    assert lines and all(len(ln) < 50 for ln in lines)
    # Typed back by a person: lower case, spacing changed, O typed as 0, blank lines around.
    typed = "\n\n".join(ln.lower().replace(" ", "  ").replace("o", "0") for ln in lines)
    (tmp_path / "typed.txt").write_text(typed + "\n")
    lose_keys(cli)
    cli("key", "import", "--paper", str(tmp_path / "typed.txt"))
    assert cli("cat", "latest", str(tmp_path / "f.txt")).out == b"keep me"


def test_paper_mistyped_line_is_named(cli, tmp_path):
    paper = cli("key", "export", "--paper").text
    lines = paper.splitlines()
    idx = next(i for i, ln in enumerate(lines) if ln.startswith("03: "))
    body = lines[idx]
    swapped = "B" if body[4] != "B" else "C"
    lines[idx] = body[:4] + swapped + body[5:]
    (tmp_path / "bad.txt").write_text("\n".join(lines))
    result = cli("key", "import", "--paper", str(tmp_path / "bad.txt"), check=False)
    assert result.code == 14 and "line 3" in result.err and "Traceback" not in result.err
    del lines[idx]
    (tmp_path / "gap.txt").write_text("\n".join(lines))
    result = cli("key", "import", "--paper", str(tmp_path / "gap.txt"), check=False)
    assert result.code == 14 and "3" in result.err and "missing" in result.err


def test_export_of_another_repository_is_refused(cli, tmp_path):
    other = Cli(str(tmp_path / "other"), str(tmp_path / "cache2"))
    other("init")
    other("key", "export", str(tmp_path / "other.txt"))
    result = cli("key", "import", str(tmp_path / "other.txt"), check=False)
    assert result.code == 2 and "belongs to repository" in result.err


def test_paper_codec_round_trip_and_damage():
    exported = export.KeyExport(bytes(range(16)), b"\x86" + b"k" * 200)
    with pytest.raises(FormatError):  # not a valid key file inside
        export.decode_paper(export.encode_paper(exported))
    with pytest.raises(FormatError):
        export.decode_file("-----BEGIN DEDUPE KEY-----\n!!!\n-----END DEDUPE KEY-----")
    with pytest.raises(FormatError):
        export.decode_any("nothing here")
