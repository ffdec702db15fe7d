"""`dedupe completion bash|zsh|fish` and `--man DIR`, tried in the real shells.

Each script comes from the installed command (a subprocess of the CLI), is loaded the way its
README line installs it, and is asked for completions by the shell itself: bash through
COMP_WORDS and the registered function, fish through `complete -C`, zsh through a real
interactive zsh on a pty with compinit (the completion system only runs inside its widgets).
A shell that is not installed skips its test (CI installs zsh and fish: tools/ci-servers.sh).
"""

from __future__ import annotations

import os
import pty
import select
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dedupe.cli.cmd_completion import man_page
from dedupe.cli.main import build_parser
from tests.clitools import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))


def _script(cli: Cli, shell: str, tmp_path: Path, name: str) -> Path:
    result = cli("completion", shell)
    assert result.err == ""
    path = tmp_path / name
    path.write_bytes(result.out)
    return path


def _need(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (apt-get install {shell})")


# --- bash ------------------------------------------------------------------------------------


def _bash_complete(script: Path, *words: str) -> list[str]:
    quoted = " ".join(shlex.quote(w) for w in words)
    program = (
        f"source {shlex.quote(str(script))}\n"
        "complete -p dedupe\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
        '_dedupe; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    registered, *offered = done.stdout.splitlines()
    assert registered == "complete -o default -F _dedupe dedupe"
    return sorted(line for line in offered if line)


def test_bash_completion_from_the_command(cli, tmp_path):
    script = _script(cli, "bash", tmp_path, "dedupe")
    assert _bash_complete(script, "dedupe", "sn") == ["snapshot", "snapshots"]
    assert _bash_complete(script, "dedupe", "compl") == ["completion"]
    assert _bash_complete(script, "dedupe", "completion", "") == ["bash", "fish", "zsh"]
    assert _bash_complete(script, "dedupe", "-r", "/srv/repo", "copy", "--to-") == [
        "--to-s3-endpoint"
    ]
    assert _bash_complete(script, "dedupe", "copy", "--to", "") == []  # a path: bash's own


# --- fish ------------------------------------------------------------------------------------


def _fish_complete(script: Path, line: str) -> list[str]:
    program = f"source {shlex.quote(str(script))}; complete -C {shlex.quote(line)}"
    done = subprocess.run(
        ["fish", "--no-config", "-c", program],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"HOME": str(script.parent)},
    )
    assert done.stderr == ""
    return sorted(line.split("\t")[0] for line in done.stdout.splitlines())


def test_fish_completion_offers_commands_options_and_choices(cli, tmp_path):
    _need("fish")
    script = _script(cli, "fish", tmp_path, "dedupe.fish")
    assert _fish_complete(script, "dedupe sn") == ["snapshot", "snapshots"]
    assert _fish_complete(script, "dedupe --repo /srv/backup/repo resto") == ["restore"]
    assert "--exclude" in _fish_complete(script, "dedupe snapshot --ex")
    assert _fish_complete(script, "dedupe key ") == ["export", "import", "passwd"]
    assert _fish_complete(script, "dedupe schedule in") == ["install"]
    assert _fish_complete(script, "dedupe forget --keep-m") == ["--keep-monthly"]
    # descriptions come along: the command's summary
    done = subprocess.run(
        ["fish", "--no-config", "-c", f"source {script}; complete -C 'dedupe ini'"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("init\tcreate")


# --- zsh -------------------------------------------------------------------------------------


class _Zsh:
    """An interactive `zsh -f` on a pty: type a line, press Tab, read what zsh draws."""

    def __init__(self, home: Path) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            os.environ.update(TERM="dumb", HOME=str(home))
            os.execvp("zsh", ["zsh", "-f", "-i"])
        self.seen = ""

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait_for(self, marker: str, timeout: float = 30) -> str:
        """What zsh drew until `marker` appeared (fails after `timeout` s without it)."""
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"zsh never showed {marker!r}; it showed {self.seen!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536).decode("utf-8", "replace")
                except OSError:
                    break
        shown, _, self.seen = self.seen.partition(marker)
        return shown

    def close(self) -> None:
        os.close(self.fd)
        os.waitpid(self.pid, 0)


def test_zsh_completion_parses_autoloads_and_completes(cli, tmp_path):
    _need("zsh")
    functions = tmp_path / "zfunc"
    functions.mkdir()
    script = _script(cli, "zsh", functions, "_dedupe")
    subprocess.run(["zsh", "-n", str(script)], check=True)
    # Installed as README says (a folder in fpath before compinit), compinit registers it.
    found = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            f"fpath=({shlex.quote(str(functions))} $fpath); autoload -U compinit; "
            "compinit -u -D; print -r -- $_comps[dedupe]",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "_dedupe"
    zsh = _Zsh(tmp_path)
    try:
        zsh.send(
            f"fpath=({shlex.quote(str(functions))} $fpath); autoload -U compinit; "
            "compinit -u -D; PS1='%% '; print RE''ADY\n"
        )
        zsh.wait_for("READY")
        zsh.send("dedupe resto\t")  # one match: zsh writes it out on the line
        zsh.wait_for("dedupe restore ")
        zsh.send("\x15dedupe key \t")  # Ctrl-U clears the line; three choices are listed
        listing = zsh.wait_for("passwd")
        assert "export" in listing and "import" in listing
        zsh.send("\x15dedupe forget --keep-mo\t")
        zsh.wait_for("--keep-monthly")
        zsh.send("\x15exit\n")
    finally:
        zsh.close()


# --- the manual page and wrong usage ---------------------------------------------------------


def test_man_writes_the_page_into_a_new_folder(cli, tmp_path):
    target = tmp_path / "share" / "man" / "man1"
    result = cli("completion", "--man", str(target))
    page = (target / "dedupe.1").read_text()
    assert result.out == b"" and f"wrote {target / 'dedupe.1'}" in result.err
    assert page.startswith(".TH DEDUPE 1 ") and ".SS completion\n" in page
    assert page == man_page(build_parser())  # what tools/make-man.py writes to docs/dedupe.1
    if shutil.which("groff") is not None:
        shown = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", str(target / "dedupe.1")],
            capture_output=True,
            text=True,
        )
        assert shown.returncode == 0 and shown.stderr == ""


def test_completion_without_a_shell_or_man_is_a_usage_error(cli, tmp_path):
    result = cli("completion", check=False)
    assert result.code == 2 and "bash, zsh or fish" in result.err
    result = cli("completion", "tcsh", check=False)
    assert result.code == 2 and "tcsh" in result.err
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    result = cli("completion", "--man", str(blocked / "man1"), check=False)
    assert result.code == 1 and "could not write the manual page" in result.err
    assert "Traceback" not in result.err
