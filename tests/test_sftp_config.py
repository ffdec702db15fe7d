"""SFTP behaves as OpenSSH because it is OpenSSH: ssh_config directives (Include, Match,
ProxyJump, ProxyCommand, HostKeyAlias), strict host keys whatever the config says, the key
advice, and clear messages, against the real sshd of tests/servers.py.

The config is handed to ssh with `DEDUPE_SSH_COMMAND="ssh -F FILE"`, so the real ~/.ssh and
/etc/ssh/ssh_config are never read (ssh takes `~` from the password database, not $HOME).
"""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest

from dedupe.errors import StorageError, TransientStorageError
from dedupe.storage.sftp import SFTPStorage
from tests.clitools import Cli
from tests.servers import SFTPServer, free_port


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ssh config file of our own (empty), no agent and no DEDUPE_SFTP_* variables."""
    path = tmp_path / "ssh" / "config"
    path.parent.mkdir()
    path.write_text("")
    path.chmod(0o600)
    monkeypatch.setenv("DEDUPE_SSH_COMMAND", f"ssh -F {path}")
    for name in (
        "SSH_AUTH_SOCK",
        "DEDUPE_SFTP_IDENTITY",
        "DEDUPE_SFTP_KNOWN_HOSTS",
        "DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    return path


def _write(path: Path, text: str) -> None:
    """A config file ssh accepts whatever the umask (it refuses group- or world-writable ones)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)


def _login_lines(server: SFTPServer, alias: str, known_hosts: str | None = None) -> str:
    """A Host block that logs in to the test sshd."""
    return (
        f"Host {alias}\n"
        f"  HostName {server.host}\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.identity}\n"
        f"  UserKnownHostsFile {known_hosts or server.known_hosts}\n"
    )


def _round_trip(url: str) -> SFTPStorage:
    storage = SFTPStorage.from_url(url, create=True, connections=1)
    storage.put("config", b"written through the config")
    assert storage.get("config") == b"written through the config"
    return storage


def _refusal(url: str) -> StorageError:
    storage = SFTPStorage.from_url(url, connections=1, reconnect_attempts=0)
    try:
        with pytest.raises(StorageError) as caught:
            storage.get("config")
    finally:
        storage.close()
    return caught.value


def _forwarded_into(server: SFTPServer) -> int:
    """TCP connections to the sshd opened by the sshd itself: what a jump host's forwarding
    (direct-tcpip) makes when the sshd is its own jump host."""
    sshd = {server.proc.pid, *(c.pid for c in psutil.Process(server.proc.pid).children(True))}
    return sum(
        1
        for c in psutil.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == server.port and c.pid in sshd
    )


# --- directives: OpenSSH reads them, so none is ignored ----------------------------------------


def test_an_included_file_is_read(config, sftp_server):
    _write(config, f"Include {config.parent}/config.d/*.conf\n")
    _write(config.parent / "config.d" / "office.conf", _login_lines(sftp_server, "office-nas"))
    _round_trip(f"sftp://office-nas{sftp_server.root}/{uuid.uuid4().hex}").close()


def test_match_blocks_apply(config, sftp_server):
    _write(
        config,
        _login_lines(sftp_server, "nas").replace(f"  Port {sftp_server.port}\n", "")
        + f"Match originalhost nas\n  Port {sftp_server.port}\n",
    )
    _round_trip(f"sftp://nas{sftp_server.root}/{uuid.uuid4().hex}").close()


def test_hostkeyalias_is_honoured(config, sftp_server, tmp_path):
    # known_hosts records the key under the alias only: found through HostKeyAlias, or refused.
    key = Path(sftp_server.known_hosts).read_text().split(" ", 1)[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"office-nas-alias {key}")
    _write(
        config,
        _login_lines(sftp_server, "nas", str(known)) + "  HostKeyAlias office-nas-alias\n",
    )
    _round_trip(f"sftp://nas{sftp_server.root}/{uuid.uuid4().hex}").close()


def test_a_bad_config_line_is_named_and_permanent(config, sftp_server):
    _write(config, _login_lines(sftp_server, "nas") + "  NoSuchDirective yes\n")
    refused = _refusal(f"sftp://nas{sftp_server.root}/x")
    assert not isinstance(refused, TransientStorageError)
    assert f"{config}: line 7: Bad configuration option: nosuchdirective" in str(refused)


def test_the_url_user_and_port_win_over_the_config(config, sftp_server):
    _write(config, _login_lines(sftp_server, "nas").replace(f"Port {sftp_server.port}", "Port 1"))
    url = f"sftp://{sftp_server.user}@nas:{sftp_server.port}{sftp_server.root}/{uuid.uuid4().hex}"
    _round_trip(url).close()


# --- ProxyJump and ProxyCommand ----------------------------------------------------------------


def test_proxyjump_goes_through_the_jump_host(config, sftp_server):
    # The sshd is its own jump host: the SFTP session comes in through its own forwarding.
    _write(
        config,
        _login_lines(sftp_server, "gateway")
        + _login_lines(sftp_server, "behind").replace(
            "Host behind\n", "Host behind\n  ProxyJump gateway\n"
        ),
    )
    before = _forwarded_into(sftp_server)
    storage = _round_trip(f"sftp://behind{sftp_server.root}/{uuid.uuid4().hex}")
    try:
        assert _forwarded_into(sftp_server) == before + 1
    finally:
        storage.close()


def test_proxyjump_written_inline_with_user_and_port(config, sftp_server):
    # (as `localhost`: ssh refuses a jump host spelled as the target itself, a loop)
    jump = f"{sftp_server.user}@localhost:{sftp_server.port}"
    _write(
        config,
        _login_lines(sftp_server, "behind").replace(
            "Host behind\n", f"Host behind\n  ProxyJump {jump}\n"
        )
        + f"Host localhost\n  IdentityFile {sftp_server.identity}\n"
        f"  UserKnownHostsFile {sftp_server.known_hosts}\n"
        f"  HostKeyAlias [127.0.0.1]:{sftp_server.port}\n",
    )
    _round_trip(f"sftp://behind{sftp_server.root}/{uuid.uuid4().hex}").close()


def test_a_jump_host_that_cannot_reach_the_target_is_named(config, sftp_server):
    closed = free_port()
    _write(
        config,
        _login_lines(sftp_server, "gateway")
        + f"Host behind\n  HostName 127.0.0.1\n  Port {closed}\n  ProxyJump gateway\n",
    )
    message = str(_refusal(f"sftp://behind{sftp_server.root}/x"))
    assert (
        f"the jump host {sftp_server.user}@127.0.0.1:{sftp_server.port} could not connect on "
        f"to 127.0.0.1:{closed}" in message
    ), message


def test_proxycommand_is_run(config, sftp_server, tmp_path):
    relay = tmp_path / "relay.py"
    relay.write_text(
        textwrap.dedent(
            """\
            import os, socket, sys, threading
            sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
            def upstream():
                while data := os.read(0, 65536):
                    sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            threading.Thread(target=upstream, daemon=True).start()
            while data := sock.recv(65536):
                os.write(1, data)
            """
        )
    )
    _write(
        config,
        _login_lines(sftp_server, "relayed").replace(
            "Host relayed\n", f"Host relayed\n  ProxyCommand {sys.executable} {relay} %h %p\n"
        ),
    )
    _round_trip(f"sftp://relayed{sftp_server.root}/{uuid.uuid4().hex}").close()


def test_a_server_that_never_answers_times_out(config, sftp_server, tmp_path):
    silent = tmp_path / "silent.py"
    silent.write_text("import sys\nsys.stdin.buffer.read()\n")  # ends when ssh goes
    _write(
        config,
        _login_lines(sftp_server, "mute").replace(
            "Host mute\n", f"Host mute\n  ProxyCommand {sys.executable} {silent}\n"
        ),
    )
    storage = SFTPStorage.from_url(
        f"sftp://mute{sftp_server.root}/x", connections=1, reconnect_attempts=0, timeout=1
    )
    try:
        with pytest.raises(TransientStorageError, match="did not answer for 1 s"):
            storage.get("config")
    finally:
        storage.close()


# --- host keys, keys, the ssh program ---------------------------------------------------------


def test_strict_host_key_checking_no_in_the_config_is_overruled(config, sftp_server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    _write(
        config,
        _login_lines(sftp_server, "nas", str(empty)) + "  StrictHostKeyChecking no\n",
    )
    refused = _refusal(f"sftp://nas{sftp_server.root}/x")
    assert "is not known" in str(refused) and "SHA256:" in str(refused)
    assert not isinstance(refused, TransientStorageError)
    assert empty.read_text() == ""  # nothing recorded


def test_accept_new_in_the_config_records_a_new_host(config, sftp_server, tmp_path):
    known = tmp_path / "known_hosts"
    _write(
        config,
        _login_lines(sftp_server, "nas", str(known)) + "  StrictHostKeyChecking accept-new\n",
    )
    _round_trip(f"sftp://nas{sftp_server.root}/{uuid.uuid4().hex}").close()
    assert f"[127.0.0.1]:{sftp_server.port} ssh-ed25519 " in known.read_text()


def test_no_key_and_no_agent_gets_the_key_advice(config, sftp_server, tmp_path):
    _write(
        config,
        f"Host office\n  HostName {sftp_server.host}\n  Port {sftp_server.port}\n"
        f"  IdentityFile {tmp_path}/no-such-key\n  UserKnownHostsFile {sftp_server.known_hosts}\n",
    )
    refused = _refusal(f"sftp://office{sftp_server.root}/x")
    message = str(refused)
    assert not isinstance(refused, TransientStorageError)
    assert "SSH authentication failed" in message and "no key to offer" in message
    assert "ssh-agent: not running" in message and "IdentityFile" in message


def test_a_missing_ssh_program_is_named(config, sftp_server, monkeypatch):
    monkeypatch.setenv("DEDUPE_SSH_COMMAND", "/nonexistent/ssh")
    refused = _refusal(f"sftp://office{sftp_server.root}/x")
    assert "cannot run '/nonexistent/ssh'" in str(refused)
    assert "openssh-client" in str(refused)


def test_ssh_runs_in_its_own_process_group_with_no_secret_in_argv(config, sftp_server):
    # Ctrl-C in a terminal reaches dedupe, which still needs the connection to clean up.
    _write(config, _login_lines(sftp_server, "nas"))
    storage = _round_trip(f"sftp://nas{sftp_server.root}/{uuid.uuid4().hex}")
    try:
        conn = storage._pool.acquire()
        try:
            assert os.getpgid(conn.proc.pid) != os.getpgid(0)
            argv = psutil.Process(conn.proc.pid).cmdline()
            assert "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
        finally:
            storage._pool.release(conn)
    finally:
        storage.close()


def test_the_cli_backs_up_through_include_and_proxyjump(config, sftp_server, tmp_path):
    _write(config, f"Include {config.parent}/conf.d/*\n")
    _write(config.parent / "conf.d" / "10-gateway", _login_lines(sftp_server, "gateway"))
    _write(
        config.parent / "conf.d" / "20-nas",
        _login_lines(sftp_server, "nas").replace("Host nas\n", "Host nas\n  ProxyJump gateway\n"),
    )
    url = f"sftp://nas{sftp_server.root}/{uuid.uuid4().hex}"
    cli = Cli(url, str(tmp_path / "cache"))
    cli.env["DEDUPE_SSH_COMMAND"] = f"ssh -F {config}"
    cli.env.pop("SSH_AUTH_SOCK", None)
    data = tmp_path / "data"
    data.mkdir()
    (data / "letter.txt").write_text("dear patient")
    cli("init", "-q")
    cli("snapshot", "-q", str(data))
    assert str(data) in cli("snapshots").text
